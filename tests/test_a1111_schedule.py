"""A1111's img2img schedule, pinned by its numbers.

The reference values are computed here from A1111's and k-diffusion's formulas, written out independently
of pipelines/generation/schedules.py (torch, as k-diffusion does it), for SD 1.x's betas (scaled_linear
0.00085..0.012, 1000 steps). Then the UNet of the demo engine is watched: how many calls, at which timesteps.
"""

from __future__ import annotations

import math

import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture

from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SAMPLERS, resolve_sampler
from pipelines.generation.schedules import DiscreteSigmas

BETAS = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0)
SIGMAS = ((1 - ALPHAS_CUMPROD) / ALPHAS_CUMPROD) ** 0.5
LOG_SIGMAS = SIGMAS.log()
MODEL = DiscreteSigmas(ALPHAS_CUMPROD.numpy())
STRENGTHS = (0.04, 0.5, 0.75, 1.0)


# --- k-diffusion, written out ------------------------------------------------------------------------------
def t_to_sigma(t):
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * LOG_SIGMAS[low] + w * LOG_SIGMAS[high]).exp()


def get_sigmas(n):  # DiscreteSchedule.get_sigmas (A1111's Automatic on Euler a/Euler/LMS/Heun, and "Uniform")
    return torch.cat([t_to_sigma(torch.linspace(999, 0, n, dtype=torch.float64)), torch.zeros(1, dtype=torch.float64)])


def get_sigmas_karras(n, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = SIGMAS[0] ** (1 / rho), SIGMAS[-1] ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def get_sigmas_exponential(n):
    s = torch.linspace(math.log(SIGMAS[-1]), math.log(SIGMAS[0]), n, dtype=torch.float64).exp()
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def a1111_sigma_sched(schedule, steps, strength, discard=False, fix_steps=False):
    """setup_img2img_steps + get_sigmas (+ discard_next_to_last_sigma) + sigmas[steps - t_enc - 1:]."""
    if fix_steps:
        steps, t_enc = int(steps / min(strength, 0.999)), steps - 1
    else:
        t_enc = int(min(strength, 0.999) * steps)
    fn = {"Uniform": get_sigmas, "Karras": get_sigmas_karras, "Exponential": get_sigmas_exponential}[schedule]
    sigmas = fn(steps + 1 if discard else steps)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas[steps - t_enc - 1:]


# A1111's samplers_k_diffusion: what Automatic means, and who discards the penultimate sigma.
A1111_AUTOMATIC = {
    "DPM++ 2M": "Karras", "DPM++ SDE": "Karras", "DPM++ 2M SDE": "Exponential", "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 2S a": "Karras", "DPM++ 3M SDE": "Exponential", "Euler a": "Uniform", "Euler": "Uniform",
    "LMS": "Uniform", "Heun": "Uniform", "DPM2": "Karras", "DPM2 a": "Karras",
}
DISCARD = {"DPM2", "DPM2 a", "DPM++ 3M SDE"}


def test_the_issue_numbers_euler_a():
    c = resolve_sampler("Euler a")
    for strength, steps, start in ((0.75, 16, 4.86), (1.0, 20, 14.61), (0.04, 1, None)):
        run = c.run_schedule(MODEL, 20, strength)
        assert run.steps == steps
        if start:
            assert run.start_sigma == pytest.approx(start, abs=0.01)
    assert c.run_schedule(MODEL, 20, 0.04).start_sigma == pytest.approx(float(SIGMAS[0]), rel=1e-4)


@pytest.mark.parametrize("name", sorted(A1111_AUTOMATIC))
@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("fix_steps", [False, True])
def test_k_samplers_run_a1111s_sigmas(name, strength, fix_steps):
    choice = resolve_sampler(name)
    assert choice.resolved_schedule == A1111_AUTOMATIC[name]
    for schedule in ("Automatic", "Karras", "Exponential", "Uniform"):
        c = resolve_sampler(name, schedule)
        expected = a1111_sigma_sched(c.resolved_schedule, 20, strength, name in DISCARD, fix_steps)
        run = c.run_schedule(MODEL, 20, strength, fix_steps)
        assert run.steps == len(expected) - 1 and not run.vp
        assert torch.allclose(torch.tensor(run.sigmas), expected, rtol=1e-5), (schedule, run.sigmas, expected)
        if fix_steps:
            assert run.steps == 20
        # ...and the diffusers scheduler built from it runs exactly those sigmas (midpoints aside)
        scheduler = c.make_scheduler(_config(), 0, run)
        scheduler.set_timesteps(run.steps)
        main = _main_sigmas(scheduler, run.steps)
        assert torch.allclose(main, expected.float(), rtol=1e-4), (schedule, main, expected)


def _config():
    import diffusers

    return diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   steps_offset=1, skip_prk_steps=True).config


def _main_sigmas(scheduler, n):
    """The n + 1 step sigmas of a diffusers scheduler, without the repeats of 2nd-order ones."""
    s = scheduler.sigmas.float()
    if len(s) == 2 * n:  # Heun, DPM++ SDE: s0, s1, s1, .., s_n-1, s_n-1, final
        return torch.cat([s[0::2], s[-1:]])
    if len(s) == 2 * n + 2:  # KDPM2 (a): s0, s1, s1, .., s_n, s_n, final
        return s[0::2]
    return s


def test_timestep_samplers_follow_a1111s_rule():
    """DDIM/PLMS: timesteps 1, 1 + 1000 // steps, ...; init noised to timesteps[t_enc]; run timesteps[:t_enc]
    from the top, DDIM one call per index t_enc-1..1, PLMS one more (its first improved-Euler step)."""
    for steps, strength in ((20, 0.75), (20, 1.0), (6, 1.0), (20, 0.5)):
        t_enc = int(min(strength, 0.999) * steps)
        ts = torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)
        ddim = resolve_sampler("DDIM").run_schedule(MODEL, steps, strength)
        assert ddim.timesteps.tolist() == ts[1:t_enc].flip(0).tolist()
        assert ddim.start_sigma == pytest.approx(float(SIGMAS[ts[t_enc]]), rel=1e-6) and ddim.vp
        plms = resolve_sampler("PLMS").run_schedule(MODEL, steps, strength)
        k = t_enc - 1
        assert plms.timesteps.tolist() == [int(ts[k]), int(ts[k - 1])] + [int(ts[j]) for j in range(k - 1, 0, -1)]
        assert plms.steps == t_enc
    assert resolve_sampler("DDIM").run_schedule(MODEL, 20, 0.75).timesteps[:2].tolist() == [701, 651]
    assert resolve_sampler("DDIM").run_schedule(MODEL, 20, 0.04).steps == 0  # A1111 returns the noised init


def test_unipc_and_lcm_schedules():
    unipc = resolve_sampler("UniPC").run_schedule(MODEL, 20, 0.75)  # t_start = timesteps[t_enc - 1] = 701
    assert unipc.steps == 15 and unipc.timesteps[0] == 701 and unipc.timesteps[-1] == pytest.approx(701 / 15)
    # A1111's NoiseScheduleVP: log alpha interpolated in t; at integer t that is the model's own sigma
    assert unipc.sigmas[0] == pytest.approx(float(SIGMAS[701]), rel=1e-6)
    assert unipc.sigmas[-1] == pytest.approx(float(SIGMAS[0]), rel=1e-6)  # ends at t = 0, not sigma 0
    lcm = resolve_sampler("LCM").run_schedule(MODEL, 4, 1.0)
    assert lcm.timesteps.tolist() == pytest.approx([999, 999 - 980 / 3, 19 + 980 / 3, 19])


def test_automatic_resolves_as_a1111_and_infotext_schedule():
    assert resolve_sampler("DPM++ SDE").resolved_schedule == "Karras"
    assert resolve_sampler("DPM++ 2M SDE Heun").spec.options["solver_type"] == "heun"
    assert resolve_sampler("DPM++ 2M").infotext_schedule == "Karras"
    assert resolve_sampler("Euler a").infotext_schedule == "Automatic"  # A1111 used the model's own sigmas
    assert resolve_sampler("Euler a", "Uniform").infotext_schedule == "Uniform"
    assert resolve_sampler("Euler", "sgm_uniform").resolved_schedule == "SGM Uniform"
    assert {s.name for s in SAMPLERS} >= set(A1111_AUTOMATIC) | {"DDIM", "PLMS", "UniPC", "LCM"}


def test_other_schedule_types_match_a1111_formulas():
    n = 10
    sgm = [float(t_to_sigma(t)) for t in torch.linspace(999, 0, n + 1, dtype=torch.float64)[:-1]] + [0.0]
    simple = [float(SIGMAS[-(1 + int(x * 1000 / n))]) for x in range(n)] + [0.0]
    ddim = [float(s) for s in SIGMAS[1::100].flip(0)] + [0.0]
    alpha_min, alpha_max = math.atan(SIGMAS[0]), math.atan(SIGMAS[-1])
    kl = [math.tan(i / n * alpha_min + (1 - i / n) * alpha_max) for i in range(n + 1)]
    for name, expected in (("SGM Uniform", sgm), ("Simple", simple), ("DDIM", ddim), ("KL Optimal", kl),
                           ("Normal", get_sigmas(n).tolist())):
        run = resolve_sampler("Euler", name).run_schedule(MODEL, n, 1.0)
        assert run.sigmas.tolist() == pytest.approx(expected, rel=1e-5), name
    ays = resolve_sampler("Euler", "Align Your Steps").run_schedule(MODEL, 11, 1.0)  # 11 = its own list, no interp
    assert ays.sigmas.tolist() == pytest.approx([14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399,
                                                 0.152, 0.029, 0.0])
    beta = resolve_sampler("Euler", "Beta").run_schedule(MODEL, n, 1.0).sigmas
    assert beta[0] == pytest.approx(float(SIGMAS[-1])) and beta[-2] == pytest.approx(float(SIGMAS[0]))


# --- What the UNet sees on the demo engine -------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def unet_timesteps(engine, **kw):
    req = Img2ImgRequest(init_image=blocky_picture(), prompt="a cat", width=64, height=64, steps=20, seed=3,
                         save_images=False, **kw)
    pipe = engine.models.pipeline("img2img")
    seen, steps = [], []
    handle = pipe.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(float(args[1] if len(args) > 1 else kwargs["timestep"])),
        with_kwargs=True)
    try:
        engine.img2img(req, on_progress=lambda u: steps.append(u.steps))
    finally:
        handle.remove()
    return seen, steps


@pytest.mark.parametrize("strength,calls", [(0.04, 1), (0.5, 11), (0.75, 16), (1.0, 20)])
def test_unet_sees_a1111s_steps_euler_a(engine, strength, calls):
    seen, steps = unet_timesteps(engine, sampler_name="Euler a", denoising_strength=strength)
    expected = a1111_sigma_sched("Uniform", 20, strength)[:-1]
    assert len(seen) == calls == len(expected) and set(steps) == {calls}
    # the UNet gets k-diffusion's fractional t = sigma_to_t(sigma)
    assert seen[0] == pytest.approx(float(MODEL.sigma_to_t(float(expected[0]))), abs=1e-3)


def test_fix_steps_runs_exactly_steps(engine):
    seen, _ = unet_timesteps(engine, sampler_name="Euler", denoising_strength=0.5, img2img_fix_steps=True)
    assert len(seen) == 20
    assert seen[0] == pytest.approx(MODEL.sigma_to_t(float(a1111_sigma_sched("Uniform", 20, 0.5, fix_steps=True)[0])),
                                    abs=1e-3)


def test_dpmpp_2m_karras_and_ddim_on_the_unet(engine):
    seen, _ = unet_timesteps(engine, sampler_name="DPM++ 2M", denoising_strength=0.75)
    expected = a1111_sigma_sched("Karras", 20, 0.75)[:-1]
    assert seen == pytest.approx([MODEL.sigma_to_t(float(s)) for s in expected], abs=5e-3)  # float32 t
    seen, _ = unet_timesteps(engine, sampler_name="DDIM", denoising_strength=0.75)
    assert seen == [float(t) for t in range(701, 50, -50)]  # timesteps[14] .. timesteps[1]
