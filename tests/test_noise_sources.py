"""Seeds that reproduce A1111's pictures: the noise sources GPU / CPU / NV (NVIDIA's Philox emulated on the CPU),
the variation-seed blend with each, ENSD for the sampler's step noise, and the img2img noise multiplier.

The NV reference numbers: Random123's known-answer vectors pin Philox 4x32-10 itself; A1111's rng_philox.py
docstring gives its generator's output for seed 0; CUDA's torch.randn for seed 42 is the other anchor (printed
by torch to 4 decimals), since A1111's NV source exists to give exactly what torch.randn gives on NVIDIA GPUs.

    .venv/bin/python -m pytest -q tests/test_noise_sources.py            # CPU
    .venv/bin/python -m pytest -q -m gpu tests/test_noise_sources.py     # + the CUDA comparison
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture

from pipelines.fields import RequestError
from pipelines.generation.noise import RANDN_SOURCES, batch_noise, initial_noise, randn, slerp, uses_ensd
from pipelines.generation.philox import PhiloxGenerator, box_muller, philox4x32
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.models.sd_pipelines import SeededImg2ImgPipeline

# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> output (4 words).
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
# A1111 modules/rng_philox.py docstring: Generator(seed=0).randn(shape=(3, 4)).
A1111_SEED_0 = [[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
                [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
                [-1.07454231, -0.36314407, -1.67105067, 2.26550497]]
# torch.manual_seed(42); torch.randn(16, device="cuda") on an NVIDIA GPU, as torch prints it.
CUDA_SEED_42 = [0.1940, 2.1614, -0.1721, 0.8491, -1.9244, 0.6530, -0.6494, -0.8175,
                0.5280, -1.2753, -1.6621, -0.3033, -0.0926, 0.1992, -1.1204, 1.8577]
SHAPE = (4, 8, 8)


# 1. Philox and Box-Muller -----------------------------------------------------------------------------------
@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox_known_answer_vectors(counter, key, expected):
    out = philox4x32(np.array(counter, dtype=np.uint32).reshape(4, 1), key)
    assert [int(w) for w in out[:, 0]] == list(expected)


def test_philox_counts_each_element_independently():
    counters = np.array([c for c, _, _ in PHILOX_KAT[:2]], dtype=np.uint32).T  # two counters, one key
    out = philox4x32(counters, (0, 0))
    assert [int(w) for w in out[:, 0]] == list(PHILOX_KAT[0][2])
    assert [int(w) for w in out[:, 1]] != list(PHILOX_KAT[1][2])  # same counter, other key: other output


def test_box_muller_by_hand():
    """Seed 0, offset 0, element 0 is Philox at counter 0, key 0: its first two words through curand's
    transform (u, v at the centres of 2^32 bins of (0, 1] and (0, 2pi]), done here with the math module."""
    x, y = PHILOX_KAT[0][2][:2]
    step = float(np.float32(2.3283064e-10))
    step_2pi = float(np.float32(2.3283064e-10 * 6.2831855))
    u, v = x * step + step / 2, y * step_2pi + step_2pi / 2
    by_hand = math.sqrt(-2 * math.log(u)) * math.sin(v)
    assert box_muller(np.array([x], np.uint32), np.array([y], np.uint32))[0] == np.float32(by_hand)
    assert PhiloxGenerator(0).randn((1,))[0] == np.float32(by_hand)
    assert by_hand == pytest.approx(A1111_SEED_0[0][0], abs=5e-7)


def test_nv_gives_a1111s_documented_numbers():
    # A1111's docstring prints 8 digits; its float64 transform rounded to float32 lands within 3e-7 of them.
    np.testing.assert_allclose(PhiloxGenerator(0).randn((3, 4)), A1111_SEED_0, atol=5e-7)
    np.testing.assert_allclose(randn(0, (3, 4), "NV").numpy(), A1111_SEED_0, atol=5e-7)


def test_nv_gives_cudas_numbers_for_seed_42():
    np.testing.assert_allclose(randn(42, (16,), "NV").numpy(), CUDA_SEED_42, atol=6e-5)


def test_nv_element_i_depends_only_on_i_and_each_call_moves_the_offset():
    generator = PhiloxGenerator(1234)
    first = generator.randn((4, 8, 8))
    second = generator.randn((4, 8, 8))
    assert np.array_equal(PhiloxGenerator(1234).randn((300,))[:256], first.reshape(-1))
    counter = np.zeros((4, 256), dtype=np.uint32)
    counter[0], counter[2] = 1, np.arange(256)  # offset 1: the generator's second call
    words = philox4x32(counter, (1234, 0))
    assert np.array_equal(box_muller(words[0], words[1]).reshape(4, 8, 8), second)
    # 64-bit seeds: the high word is the key's second word.
    big = (7 << 32) | 5
    counter[0] = 0
    words = philox4x32(counter, (5, 7))
    assert np.array_equal(PhiloxGenerator(big).randn((256,)), box_muller(words[0], words[1]))


def test_nv_is_fast_for_a_1024px_latent():
    started = time.perf_counter()
    noise = randn(1, (4, 128, 128), "NV")
    assert time.perf_counter() - started < 1.0
    assert noise.dtype == torch.float32 and abs(noise.std().item() - 1) < 0.02 and abs(noise.mean().item()) < 0.02


# 2. The three sources ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 42, 123456789, 2**32 - 1])
def test_gpu_source_without_a_gpu_is_torch_randn_after_manual_seed(seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expected = torch.randn(SHAPE)
    assert torch.equal(randn(seed, SHAPE, "GPU", torch.device("cpu")), expected)
    assert torch.equal(initial_noise(SHAPE, seed, 0, 0.0, "GPU", "cpu"), expected)


@pytest.mark.parametrize("seed", [0, 42, 123456789])
def test_cpu_source_is_the_cpu_generator_on_every_device(seed):
    expected = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(seed))
    assert torch.equal(initial_noise(SHAPE, seed, 0, 0.0), expected)  # the default source, as before
    assert torch.equal(initial_noise(SHAPE, seed, 0, 0.0, "CPU", "meta"), expected)
    # "GPU" on an MPS machine means the CPU too (A1111 avoids MPS's generator).
    assert torch.equal(initial_noise(SHAPE, seed, 0, 0.0, "GPU", "mps"), expected)


def test_nv_differs_from_the_cpu_source():
    assert not torch.allclose(randn(42, SHAPE, "NV"), randn(42, SHAPE, "CPU"), atol=0.1)


@pytest.mark.parametrize("source", RANDN_SOURCES)
def test_variation_seed_blends_with_each_source(source):
    seed, subseed = 11, 22
    low, high = randn(seed, SHAPE, source), randn(subseed, SHAPE, source)
    mid = batch_noise(SHAPE, [seed], [subseed], 0.3, source).noise[0]
    assert torch.equal(mid, slerp(0.3, low, high))
    assert torch.allclose(batch_noise(SHAPE, [seed], [subseed], 1.0, source).noise[0], high, atol=1e-5)
    assert torch.equal(batch_noise(SHAPE, [seed], [subseed], 0.0, source).noise[0], low)


def test_slerp_blends_each_column_as_a1111():
    """A1111 normalises and interpolates along dim 1 separately for every (channel, column): a whole-tensor
    slerp gives other numbers."""
    low, high = randn(1, SHAPE, "CPU").double(), randn(2, SHAPE, "CPU").double()
    t, out = 0.3, slerp(0.3, low, high)
    for c, w in [(0, 0), (2, 5), (3, 7)]:
        a, b = low[c, :, w].numpy(), high[c, :, w].numpy()
        omega = math.acos(float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))))
        expected = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
        np.testing.assert_allclose(out[c, :, w].numpy(), expected, rtol=1e-9)


@pytest.mark.parametrize("source", RANDN_SOURCES)
def test_image_i_of_a_batch_noise_is_its_own_seed(source):
    batch = batch_noise(SHAPE, [5, 6, 7], [50, 51, 52], 0.4, source, eta_noise_seed_delta=31337)
    for i, (seed, subseed) in enumerate([(5, 50), (6, 51), (7, 52)]):
        single = batch_noise(SHAPE, [seed], [subseed], 0.4, source, eta_noise_seed_delta=31337)
        assert torch.equal(batch.noise[i], single.noise[0])
        assert torch.equal(torch.randn(SHAPE, generator=batch.generators[i]),
                           torch.randn(SHAPE, generator=single.generators[0]))


def test_step_noise_continues_after_the_initial_noise_or_restarts_at_seed_plus_ensd():
    """A1111's ImageRNG: the generator that drew an image's initial noise draws its step noise next; with ENSD
    the step noise comes from a fresh generator at seed + ENSD, and the initial noise stays the seed's."""
    reference = torch.Generator("cpu").manual_seed(9)
    first, second = torch.randn(SHAPE, generator=reference), torch.randn(SHAPE, generator=reference)
    plain = batch_noise(SHAPE, [9], [0], 0.0, "CPU")
    assert torch.equal(plain.noise[0], first)
    assert torch.equal(torch.randn(SHAPE, generator=plain.generators[0]), second)
    ensd = batch_noise(SHAPE, [9], [0], 0.0, "CPU", eta_noise_seed_delta=31337)
    assert torch.equal(ensd.noise[0], first)
    assert torch.equal(torch.randn(SHAPE, generator=ensd.generators[0]), randn(9 + 31337, SHAPE, "CPU"))
    # NV: diffusers' schedulers draw from torch generators, so the step noise is the CPU's at seed (+ ENSD).
    nv = batch_noise(SHAPE, [9], [0], 0.0, "NV", eta_noise_seed_delta=31337)
    assert torch.equal(nv.noise[0], randn(9, SHAPE, "NV"))
    assert nv.generators[0].device.type == "cpu"
    assert torch.equal(torch.randn(SHAPE, generator=nv.generators[0]), randn(9 + 31337, SHAPE, "CPU"))


def test_ensd_is_recorded_as_a1111_records_it():
    assert uses_ensd(31337, "Euler a") and uses_ensd(31337, "DPM2 a", SimpleNamespace(eta=0.5))
    assert not uses_ensd(0, "Euler a")
    assert not uses_ensd(31337, "Euler a", SimpleNamespace(eta=0))  # eta 0: no step noise
    assert not uses_ensd(31337, "DPM++ 2M SDE")  # A1111's SDE samplers draw from a seeded Brownian tree


# 3. Request fields -----------------------------------------------------------------------------------------
def test_request_defaults_and_validation():
    req = Img2ImgRequest(init_image=blocky_picture(64, 64))
    assert (req.randn_source, req.eta_noise_seed_delta, req.initial_noise_multiplier) == ("GPU", 0, 1.0)
    req = Img2ImgRequest(init_image=blocky_picture(64, 64), randn_source="nv")
    req.validate()
    assert req.randn_source == "NV"
    with pytest.raises(RequestError) as error:
        Img2ImgRequest(init_image=blocky_picture(64, 64), randn_source="TPU").validate()
    assert error.value.field == "randn_source" and "'TPU'" in str(error.value) and "GPU, CPU, NV" in str(error.value)
    with pytest.raises(RequestError, match="initial_noise_multiplier: 1.6 is outside 0.0..1.5"):
        Img2ImgRequest(init_image=blocky_picture(64, 64), initial_noise_multiplier=1.6).validate()
    with pytest.raises(RequestError, match="eta_noise_seed_delta"):
        Img2ImgRequest(init_image=blocky_picture(64, 64), eta_noise_seed_delta=1.5).validate()


# 4. Through the engine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def run(engine, **kw):
    base = dict(init_image=blocky_picture(64, 64, seed=5), prompt="a lighthouse", width=64, height=64, steps=4,
                seed=1000, denoising_strength=0.9, save_images=False, sampler_name="Euler a",
                return_grid=False)  # image i of a batch, without A1111's grid first (tests/test_grids.py)
    base.update(kw)
    return engine.img2img(Img2ImgRequest(**base))


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def difference(a, b) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def test_each_source_gives_its_own_picture_and_says_so(engine):
    cpu, gpu, nv = (run(engine, randn_source=s) for s in ("CPU", "GPU", "NV"))
    assert difference(cpu.images[0], gpu.images[0]) == 0  # no CUDA here: "GPU" draws on the CPU
    assert difference(cpu.images[0], nv.images[0]) > 8
    assert parse_infotext(cpu.infotexts[0])["RNG"] == "CPU"
    assert parse_infotext(nv.infotexts[0])["RNG"] == "NV"
    assert "RNG" not in parse_infotext(gpu.infotexts[0])  # A1111 omits its default


@pytest.mark.parametrize("source", RANDN_SOURCES)
def test_batches_stay_invariant_with_every_source(engine, source):
    batch = run(engine, randn_source=source, batch_size=2, eta_noise_seed_delta=7)
    for image, seed in zip(batch.images, batch.seeds):
        single = run(engine, randn_source=source, seed=seed, eta_noise_seed_delta=7).images[0]
        assert difference(image, single) <= 1, f"{source}: seed {seed}"


def test_ensd_moves_ancestral_step_noise_only(engine):
    plain, ensd = run(engine), run(engine, eta_noise_seed_delta=31337)
    assert difference(plain.images[0], ensd.images[0]) > 8
    assert parse_infotext(ensd.infotexts[0])["ENSD"] == "31337"
    assert "ENSD" not in parse_infotext(plain.infotexts[0])
    euler, euler_ensd = run(engine, sampler_name="Euler"), run(engine, sampler_name="Euler", eta_noise_seed_delta=31337)
    assert difference(euler.images[0], euler_ensd.images[0]) == 0  # deterministic: no step noise to move
    assert "ENSD" not in parse_infotext(euler_ensd.infotexts[0])  # as A1111: only samplers that use it record it


def test_noise_multiplier_scales_the_initial_noise_and_is_recorded(engine, monkeypatch):
    seen = []
    original = SeededImg2ImgPipeline.noise

    def spy(self, noise):
        seen.append(noise.detach().clone())
        return original(self, noise)

    monkeypatch.setattr(SeededImg2ImgPipeline, "noise", spy)
    plain = run(engine, sampler_name="Euler", randn_source="NV")
    scaled = run(engine, sampler_name="Euler", randn_source="NV", initial_noise_multiplier=0.9)
    expected = batch_noise((4, 8, 8), [1000], [0], 0.0, "NV").noise
    assert torch.equal(seen[0].cpu().float(), expected)
    assert torch.allclose(seen[1].cpu().float(), expected * 0.9)
    assert difference(plain.images[0], scaled.images[0]) > 0
    assert parse_infotext(scaled.infotexts[0])["Noise multiplier"] == "0.9"
    assert "Noise multiplier" not in parse_infotext(plain.infotexts[0])


# 5. On CUDA ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("seed", [0, 42, 1234, 3_000_000_000])
def test_nv_equals_torch_randn_on_a_cuda_generator(seed):
    """What NV is for: the numbers torch.randn draws on an NVIDIA GPU (its float32 Box-Muller vs A1111's
    float64 one: a few float32 ulps apart)."""
    shape = (4, 64, 64)
    cuda = torch.randn(shape, generator=torch.Generator("cuda").manual_seed(seed), device="cuda").cpu()
    torch.testing.assert_close(randn(seed, shape, "NV"), cuda, rtol=1e-5, atol=2e-5)
    # The GPU source on a CUDA machine draws there, per image, and its step noise continues on CUDA.
    drawn = batch_noise(shape, [seed], [0], 0.0, "GPU", torch.device("cuda"))
    assert drawn.noise.device.type == "cuda" and drawn.generators[0].device.type == "cuda"
    assert torch.equal(drawn.noise[0].cpu(), cuda)
