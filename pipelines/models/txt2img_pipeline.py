"""diffusers' text-to-image pipeline with one change: the start latents come from the engine's seeded noise.

diffusers draws txt2img noise inside `prepare_latents` from the generator and scales it by the scheduler's
init_noise_sigma; A1111's seeds (variation seeds, randn_source, the per-image generators) need the engine's
noise, and A1111 starts at exactly the schedule's first noise level. So the pipeline only places the given
noise at that level; the sampling loop, CFG and scheduler steps are diffusers' own code. Built by the
ModelManager over the same components as the img2img pipeline (no second copy of any weight).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from diffusers import StableDiffusionPipeline

from pipelines.models.explicit_schedulers import add_start_noise


class SeededTxt2ImgPipeline(StableDiffusionPipeline):
    """Takes its initial noise from `with pipe.noise(noise, pure=...)`.

    pure=False (k-diffusion samplers, LCM): the noise goes to the schedule's first level the way the
    scheduler adds noise to a zero picture (A1111: x = noise * sigmas[0]). pure=True (A1111's DDIM, PLMS,
    UniPC txt2img): the start is the noise itself, as their variance-preserving samplers begin at x_T."""

    _initial_noise: torch.Tensor | None = None
    _pure_noise: bool = False

    @contextmanager
    def noise(self, noise: torch.Tensor, pure: bool = False) -> Iterator[None]:
        self._initial_noise, self._pure_noise = noise, pure
        try:
            yield
        finally:
            self._initial_noise, self._pure_noise = None, False

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator,
                        latents=None):
        if self._initial_noise is None:
            raise RuntimeError("SeededTxt2ImgPipeline expects its noise set with pipe.noise()")
        noise = self._initial_noise.to(device=device, dtype=dtype)
        if noise.shape[0] != batch_size:
            raise ValueError(f"{noise.shape[0]} noise tensors for a batch of {batch_size}")
        if self._pure_noise:
            return noise
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)  # as the img2img pipeline at strength 1: the first step's level
        return add_start_noise(self.scheduler, torch.zeros_like(noise), noise, self.scheduler.timesteps[:1])


def build_txt2img_pipeline(components) -> SeededTxt2ImgPipeline:
    return SeededTxt2ImgPipeline(
        **components.as_dict(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
