"""Seeded initial noise, with A1111's variation seed (subseed + strength, spherical interpolation)."""

from __future__ import annotations

import random

import torch

MAX_SEED = 2**32 - 1


def resolve_seed(seed: int) -> int:
    """-1 (or any negative) means a fresh random seed, as in A1111."""
    return random.randrange(MAX_SEED) if seed is None or seed < 0 else int(seed)


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (A1111's variation-seed blend)."""
    low_n = low / low.norm()
    high_n = high / high.norm()
    dot = (low_n * high_n).sum().clamp(-1, 1)
    if dot.abs() > 0.9995:  # nearly parallel: linear is exact enough and avoids dividing by ~0
        return (1 - t) * low + t * high
    omega = torch.acos(dot)
    return (torch.sin((1 - t) * omega) * low + torch.sin(t * omega) * high) / torch.sin(omega)


def initial_noise(shape: tuple[int, ...], seed: int, subseed: int, subseed_strength: float) -> torch.Tensor:
    """Noise for one image, drawn on the CPU so the same seed gives the same noise on every device."""
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    if subseed_strength > 0:
        variation = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
        noise = slerp(subseed_strength, noise, variation)
    return noise
