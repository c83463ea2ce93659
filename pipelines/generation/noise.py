"""Seeded noise as A1111 draws it: the initial noise of each image (with the variation seed's spherical blend)
and the per-image generators the sampler's step noise continues from (A1111's `ImageRNG`).

Three sources, A1111's option `randn_source`:
- "GPU" (A1111's default): torch.randn on the model's device, so a seed gives what A1111 gives on that kind of
  device. On a CPU-only or MPS machine that is the CPU, as in A1111.
- "CPU": torch.randn on the CPU, the same numbers on every machine.
- "NV": NVIDIA's Philox generator emulated on the CPU (pipelines.generation.philox): the numbers A1111 gets on
  an NVIDIA GPU, on any machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from pipelines.fields import RANDN_SOURCES
from pipelines.generation.philox import PhiloxGenerator

MAX_SEED = 2**32 - 1
CPU = torch.device("cpu")


def resolve_seed(seed: int) -> int:
    """-1 (or any negative) means a fresh random seed, as in A1111."""
    return random.randrange(MAX_SEED) if seed is None or seed < 0 else int(seed)


def draw_device(source: str, device: torch.device | str | None) -> torch.device:
    """Where torch draws a source's numbers: "GPU" on the model's device unless that is the CPU or MPS (whose
    generator A1111 avoids), everything else on the CPU (NV's numbers are computed there too)."""
    device = torch.device(device) if device is not None else CPU
    return device if source == "GPU" and device.type not in ("cpu", "mps") else CPU


def create_generator(seed: int, source: str, device: torch.device | str | None = None):
    """A fresh generator for one seed: a torch.Generator, or a PhiloxGenerator for "NV"."""
    if source not in RANDN_SOURCES:
        raise ValueError(f"unknown noise source {source!r}; valid: {', '.join(RANDN_SOURCES)}")
    if source == "NV":
        return PhiloxGenerator(seed)
    return torch.Generator(draw_device(source, device)).manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def draw(generator, shape: tuple[int, ...]) -> torch.Tensor:
    """The generator's next float32 standard-normal tensor (on the generator's device)."""
    if isinstance(generator, PhiloxGenerator):
        return torch.from_numpy(generator.randn(tuple(shape)))
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=torch.float32)


def randn(seed: int, shape: tuple[int, ...], source: str = "CPU", device=None) -> torch.Tensor:
    """The first noise tensor of `seed` (A1111's randn_local)."""
    return draw(create_generator(seed, source, device), shape)


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation-seed blend: spherical interpolation of each column (dim 1, the height of a (C, H, W)
    latent) separately, not of the whole tensor; A1111's pictures depend on that."""
    low_n = low / low.norm(dim=1, keepdim=True)
    high_n = high / high.norm(dim=1, keepdim=True)
    dot = (low_n * high_n).sum(1)
    if dot.mean() > 0.9995:  # nearly parallel: linear is exact enough and avoids dividing by ~0
        return (1 - t) * low + t * high
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so).unsqueeze(1) * low + (torch.sin(t * omega) / so).unsqueeze(1) * high


# A1111's samplers marked "uses_ensd": their step noise comes from the per-image generators, and A1111 writes
# ENSD into their infotext (other samplers' pictures may change with it too, but their infotext omits it).
ENSD_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast", "DPM adaptive"})


def uses_ensd(eta_noise_seed_delta: int, sampler_name: str, request=None) -> bool:
    """Whether A1111 records ENSD: set, with one of ENSD_SAMPLERS at an eta other than 0 (a request without an
    `eta` runs at the sampler's default, 1)."""
    eta = getattr(request, "eta", None)
    return bool(eta_noise_seed_delta) and sampler_name in ENSD_SAMPLERS and eta != 0


@dataclass
class BatchNoise:
    noise: torch.Tensor  # (batch, *shape) float32 initial noise, on the draw device
    generators: list[torch.Generator]  # one per image, for the sampler's step noise (diffusers' `generator`)


def batch_noise(shape: tuple[int, ...], seeds: list[int], subseeds: list[int], subseed_strength: float,
                source: str = "GPU", device=None, eta_noise_seed_delta: int = 0) -> BatchNoise:
    """Each image's initial noise and step-noise generator, as A1111's ImageRNG.first(): image i's generator
    is seeded with seeds[i] and draws its initial noise; the sampler's step noise continues from that
    generator, or, with eta_noise_seed_delta (ENSD) set, from a fresh one at seeds[i] + ENSD. The initial
    noise never sees ENSD. Image i depends only on its own seeds, whatever the batch."""
    noises, generators = [], []
    for seed, subseed in zip(seeds, subseeds):
        generator = create_generator(seed, source, device)
        noise = draw(generator, shape)
        if subseed_strength > 0:
            noise = slerp(subseed_strength, noise, randn(subseed, shape, source, device))
        noises.append(noise)
        generators.append(_step_generator(generator, seed, source, device, eta_noise_seed_delta))
    return BatchNoise(torch.stack(noises), generators)


def _step_generator(generator, seed: int, source: str, device, eta_noise_seed_delta: int) -> torch.Generator:
    if eta_noise_seed_delta:
        generator = create_generator(seed + eta_noise_seed_delta, source, device)
    if isinstance(generator, PhiloxGenerator):
        # diffusers' schedulers draw step noise from torch generators only, so NV's step noise comes from the
        # CPU generator of the same seed (+ ENSD): repeatable on every device, but not A1111's NV step noise.
        generator = torch.Generator("cpu").manual_seed(generator.seed)
    return generator


def initial_noise(shape: tuple[int, ...], seed: int, subseed: int, subseed_strength: float,
                  source: str = "CPU", device=None) -> torch.Tensor:
    """One image's initial noise (float32, on the draw device)."""
    return batch_noise(shape, [seed], [subseed], subseed_strength, source, device).noise[0]
