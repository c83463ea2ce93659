"""A1111's noise schedules and img2img step rule, computed exactly as A1111 (k-diffusion) computes them.

diffusers' own schedules differ from A1111's (other spacings, linear instead of log-sigma interpolation) and
its `strength` starts at another step, so the engine computes A1111's numbers here and hands them to the
scheduler (pipelines/models/explicit_schedulers.py). Pure numpy: no model, no device.

Sources: k-diffusion `DiscreteSchedule` (get_sigmas, t_to_sigma, sigma_to_t) and `get_sigmas_*`; A1111
modules/sd_schedulers.py, sd_samplers_common.setup_img2img_steps, sd_samplers_kdiffusion.sample_img2img,
sd_samplers_timesteps (DDIM/PLMS/UniPC), sd_samplers_lcm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

# A1111's "Align Your Steps" sigmas for SD 1.x (its SDXL list is only used for SDXL models).
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
BETA_ALPHA = BETA_BETA = 0.6  # A1111's beta_dist_alpha / beta_dist_beta defaults
LCM_ORIGINAL_STEPS = 50  # A1111's LCM sampler works on the 50 timesteps LCM was distilled on


def img2img_steps(steps: int, strength: float, fix_steps: bool = False) -> tuple[int, int]:
    """A1111 setup_img2img_steps: (steps the schedule is built for, t_enc)."""
    if fix_steps:  # run exactly `steps` steps, on the schedule of a longer run cut at the strength's level
        return (int(steps / min(strength, 0.999)) if strength > 0 else 0), steps - 1
    return steps, int(min(strength, 0.999) * steps)


class DiscreteSigmas:
    """k-diffusion's DiscreteSchedule over a model's training noise levels (t = 0..999)."""

    def __init__(self, alphas_cumprod: np.ndarray):
        self.alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.log_sigmas = np.log(self.sigmas)

    @classmethod
    def from_scheduler_config(cls, config) -> "DiscreteSigmas":
        """The model's own betas (SD: scaled_linear 0.00085..0.012 over 1000 steps)."""
        n, start, end = config["num_train_timesteps"], config["beta_start"], config["beta_end"]
        kind = config.get("beta_schedule", "scaled_linear")
        if config.get("trained_betas") is not None:  # e.g. zero-terminal-SNR models (models/parameterization.py)
            betas = np.asarray(config["trained_betas"], dtype=np.float32)
        elif kind == "scaled_linear":
            betas = np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float32) ** 2
        elif kind == "linear":
            betas = np.linspace(start, end, n, dtype=np.float32)
        else:
            raise ValueError(f"beta_schedule {kind!r} has no A1111 schedule here")
        # float32 cumprod, as the checkpoint's registered alphas_cumprod buffer holds it
        return cls(np.cumprod(1.0 - betas, dtype=np.float32))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
        w = t - low
        return np.exp((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high])

    def sigma_to_t(self, sigma: float) -> float:
        log_sigma = np.log(sigma)
        dists = log_sigma - self.log_sigmas
        low_idx = min(int(np.cumsum(dists >= 0).argmax()), len(self.log_sigmas) - 2)
        low, high = self.log_sigmas[low_idx], self.log_sigmas[low_idx + 1]
        w = float(np.clip((low - log_sigma) / (low - high), 0, 1))
        return (1 - w) * low_idx + w * (low_idx + 1)

    def vp_sigma(self, t) -> np.ndarray:
        """Noise level at model time t as A1111's UniPC (NoiseScheduleVP 'discrete') sees it: log alpha is
        interpolated linearly in t, not log sigma."""
        log_alpha = np.interp(np.asarray(t, dtype=np.float64), np.arange(len(self.alphas_cumprod)),
                              0.5 * np.log(self.alphas_cumprod))
        return np.sqrt(np.exp(-2 * log_alpha) - 1)


# --- A1111's schedule types: n steps -> n + 1 sigmas, descending (the last is 0 except for KL Optimal) ----
def _append_zero(sigmas) -> np.ndarray:
    return np.append(np.asarray(sigmas, dtype=np.float64), 0.0)


def uniform(n: int, m: DiscreteSigmas) -> np.ndarray:
    return _append_zero(m.t_to_sigma(np.linspace(len(m.sigmas) - 1, 0, n)))


def karras(n: int, m: DiscreteSigmas, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    lo, hi = m.sigma_min ** (1 / rho), m.sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, m: DiscreteSigmas) -> np.ndarray:
    return _append_zero(np.exp(np.linspace(np.log(m.sigma_max), np.log(m.sigma_min), n)))


def polyexponential(n: int, m: DiscreteSigmas, rho: float = 1.0) -> np.ndarray:
    ramp = np.linspace(1, 0, n) ** rho
    return _append_zero(np.exp(ramp * (np.log(m.sigma_max) - np.log(m.sigma_min)) + np.log(m.sigma_min)))


def sgm_uniform(n: int, m: DiscreteSigmas) -> np.ndarray:
    start, end = m.sigma_to_t(m.sigma_max), m.sigma_to_t(m.sigma_min)
    return _append_zero(m.t_to_sigma(np.linspace(start, end, n + 1)[:-1]))


def kl_optimal(n: int, m: DiscreteSigmas) -> np.ndarray:
    a_min, a_max = np.arctan(m.sigma_min), np.arctan(m.sigma_max)
    i = np.arange(n + 1)
    return np.tan(i / n * a_min + (1.0 - i / n) * a_max)  # ends at sigma_min, not 0 (as A1111)


def align_your_steps(n: int, m: DiscreteSigmas) -> np.ndarray:
    sigmas = np.array(AYS_SD15)
    if n != len(sigmas):  # A1111's loglinear_interp
        xs, ys = np.linspace(0, 1, len(sigmas)), np.log(sigmas[::-1])
        sigmas = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]
    return _append_zero(sigmas)


def simple(n: int, m: DiscreteSigmas) -> np.ndarray:
    ss = len(m.sigmas) / n
    return _append_zero([m.sigmas[-(1 + int(x * ss))] for x in range(n)])


def normal(n: int, m: DiscreteSigmas) -> np.ndarray:
    start, end = m.sigma_to_t(m.sigma_max), m.sigma_to_t(m.sigma_min)
    return _append_zero(m.t_to_sigma(np.linspace(start, end, n)))


def ddim_uniform(n: int, m: DiscreteSigmas) -> np.ndarray:
    ss = max(len(m.sigmas) // n, 1)  # may give more than n sigmas: A1111 runs them all
    return _append_zero(m.sigmas[1::ss][::-1])


def beta(n: int, m: DiscreteSigmas) -> np.ndarray:
    ts = stats.beta.ppf(1 - np.linspace(0, 1, n), BETA_ALPHA, BETA_BETA)
    return _append_zero(m.sigma_min + ts * (m.sigma_max - m.sigma_min))


SCHEDULES = {
    "Uniform": uniform, "Karras": karras, "Exponential": exponential, "Polyexponential": polyexponential,
    "SGM Uniform": sgm_uniform, "KL Optimal": kl_optimal, "Align Your Steps": align_your_steps,
    "Simple": simple, "Normal": normal, "DDIM": ddim_uniform, "Beta": beta,
}


def sigma_schedule(schedule: str, steps: int, m: DiscreteSigmas, discard_penultimate: bool = False) -> np.ndarray:
    """A1111 KDiffusionSampler.get_sigmas: DPM2 / DPM2 a / DPM++ 3M SDE build one more and drop the
    next-to-last sigma, so the last real step is not a tiny one."""
    if steps <= 0:
        return np.zeros(1)
    sigmas = SCHEDULES[schedule](steps + 1 if discard_penultimate else steps, m)
    return np.concatenate([sigmas[:-2], sigmas[-1:]]) if discard_penultimate else sigmas


# --- What one img2img run does -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSchedule:
    """The denoising one img2img run performs, in A1111's numbers.

    k-diffusion samplers: `sigmas` are the levels run through (last usually 0), `steps` = len(sigmas) - 1.
    Timestep samplers (DDIM, PLMS, LCM): `timesteps` are the UNet's timesteps in order.
    UniPC: `sigmas` (VP levels at `timesteps`, plus the final one).
    `start_sigma` is the noise level the init latents get: for k-samplers sigmas[0]; A1111's DDIM/PLMS/UniPC
    noise to the next timestep above the first one they run (a quirk of theirs, kept).
    """

    steps: int  # iterations of the sampling loop actually run (UNet calls for first-order samplers)
    start_sigma: float
    sigmas: np.ndarray | None = None
    timesteps: np.ndarray | None = None
    stride_steps: int = 0  # DDIM/PLMS: A1111's step count, so the scheduler's stride is 1000 // it
    vp: bool = False  # the start latents are variance-preserving (DDIM/PLMS/UniPC/LCM) instead of x + sigma * noise


def k_img2img(schedule: str, steps: int, strength: float, m: DiscreteSigmas, fix_steps: bool = False,
              discard_penultimate: bool = False) -> RunSchedule:
    """k-diffusion sample_img2img: sigma_sched = sigmas[steps - t_enc - 1:], t_enc + 1 steps."""
    steps, t_enc = img2img_steps(steps, strength, fix_steps)
    sigmas = sigma_schedule(schedule, steps, m, discard_penultimate)
    sched = sigmas[max(steps - t_enc - 1, 0):] if steps > 0 else sigmas
    return RunSchedule(len(sched) - 1, float(sched[0]), sigmas=sched)


def a1111_timesteps(steps: int) -> np.ndarray:
    """A1111 CompVisSampler.get_timesteps: 1, 1 + 1000 // steps, ... (ascending, clipped to 999)."""
    return np.clip(np.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def timestep_img2img(sampler: str, steps: int, strength: float, m: DiscreteSigmas,
                     fix_steps: bool = False) -> RunSchedule:
    """A1111 sd_samplers_timesteps.sample_img2img for DDIM / PLMS / UniPC: the init is noised to
    timesteps[t_enc]; the sampler then runs timesteps[:t_enc] from the top down."""
    steps, t_enc = img2img_steps(steps, strength, fix_steps)
    if steps <= 0:
        return RunSchedule(0, 0.0, vp=True)
    ts = a1111_timesteps(steps)
    start_sigma = float(m.sigmas[ts[t_enc]])
    if t_enc < 1 or (sampler != "UniPC" and t_enc < 2):  # nothing to iterate: A1111 returns the noised init
        return RunSchedule(0, start_sigma, vp=True)
    if sampler == "DDIM":  # one UNet call per index t_enc-1 .. 1, each stepping to the timestep below
        run = ts[t_enc - 1:0:-1]
        return RunSchedule(len(run), start_sigma, timesteps=run, stride_steps=steps, vp=True)
    if sampler == "PLMS":  # the first step is a pseudo improved Euler step: a second call at the next timestep
        k = t_enc - 1  # iterations over indexes k .. 1; calls at ts[k], ts[k-1], then ts[k-1] .. ts[1]
        run = np.concatenate([[ts[k], ts[k - 1]], ts[k - 1:0:-1]])
        return RunSchedule(len(run), start_sigma, timesteps=run, stride_steps=steps, vp=True)
    # UniPC: time-uniform in A1111's continuous time from timesteps[t_enc - 1] down to 0, t_enc steps
    model_times = np.linspace(ts[t_enc - 1], 0, t_enc + 1)
    return RunSchedule(t_enc, start_sigma, sigmas=m.vp_sigma(model_times), timesteps=model_times[:-1], vp=True)


def lcm_img2img(steps: int, strength: float, m: DiscreteSigmas, fix_steps: bool = False) -> RunSchedule:
    """A1111's LCM sampler: its sigmas live on the 50 timesteps 19, 39, .. 999; get_sigmas(n) is linear in
    those timesteps from 999 to 19; img2img slices like every k-diffusion sampler."""
    steps, t_enc = img2img_steps(steps, strength, fix_steps)
    if steps <= 0:
        return RunSchedule(0, 0.0, vp=True)
    skip = len(m.sigmas) // LCM_ORIGINAL_STEPS
    valid = DiscreteSigmas(m.alphas_cumprod[skip - 1::skip])  # the 50 distilled timesteps
    model_times = np.linspace(len(m.sigmas) - 1, skip - 1, steps)[steps - t_enc - 1:]
    sigmas = valid.t_to_sigma((model_times - (skip - 1)) / skip)
    return RunSchedule(len(model_times), float(sigmas[0]), timesteps=model_times, vp=True)
