"""diffusers pipelines with one change: the initial noise comes from the engine (seeds, variation seeds).

diffusers draws img2img noise inside `prepare_latents` from the generator; A1111's variation seed needs
noise blended from two seeds, so the engine computes it and the pipeline only adds it at the start step.
Everything else (the sampling loop, CFG, scheduler steps, decoding) is diffusers' own code.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

from pipelines.models.explicit_schedulers import add_start_noise
from pipelines.models.vae_codec import encode_pixels


class SeededImg2ImgPipeline(StableDiffusionImg2ImgPipeline):
    """Takes `image` as already-encoded, scaled init latents and noise from `with pipe.noise(...)`."""

    _initial_noise: torch.Tensor | None = None

    @contextmanager
    def noise(self, noise: torch.Tensor) -> Iterator[None]:
        self._initial_noise = noise
        try:
            yield
        finally:
            self._initial_noise = None

    def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None):
        if self._initial_noise is None or image.shape[1] != self.vae.config.latent_channels:
            raise RuntimeError("SeededImg2ImgPipeline expects init latents and noise set with pipe.noise()")
        latents = image.to(device=device, dtype=dtype)
        count = batch_size * num_images_per_prompt
        if latents.shape[0] != count:
            latents = latents.expand(count, *latents.shape[1:])
        noise = self._initial_noise.to(device=device, dtype=dtype)
        return add_start_noise(self.scheduler, latents, noise, timestep)


def build_img2img_pipeline(components) -> SeededImg2ImgPipeline:
    return SeededImg2ImgPipeline(
        **components.as_dict(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


class SeededInpaintPipeline(StableDiffusionInpaintPipeline):
    """For 9-channel inpainting UNets: start latents (masked content applied) and noise come from the engine;
    diffusers builds the mask + masked-image conditioning the UNet takes as extra input."""

    _initial_noise: torch.Tensor | None = None
    _start_latents: torch.Tensor | None = None
    _mask_weight: float = 1.0  # A1111's inpainting_mask_weight
    _source_pixels: torch.Tensor | None = None  # the init picture as diffusers preprocessed it

    @contextmanager
    def noise(self, noise: torch.Tensor, start_latents: torch.Tensor, mask_weight: float = 1.0) -> Iterator[None]:
        self._initial_noise, self._start_latents, self._mask_weight = noise, start_latents, mask_weight
        try:
            yield
        finally:
            self._initial_noise = self._start_latents = self._source_pixels = None
            self._mask_weight = 1.0

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator,
                        latents=None, image=None, timestep=None, is_strength_max=True, return_noise=False,
                        return_image_latents=False):
        if self._initial_noise is None or self._start_latents is None:
            raise RuntimeError("SeededInpaintPipeline expects start latents and noise set with pipe.noise()")
        self._source_pixels = image  # kept for the conditioning image (prepare_mask_latents)
        start = self._start_latents.to(device=device, dtype=dtype)
        start = start.expand(batch_size, *start.shape[1:])
        noise = self._initial_noise.to(device=device, dtype=dtype)
        outputs: tuple = (add_start_noise(self.scheduler, start, noise, timestep),)
        if return_noise:
            outputs += (noise,)
        if return_image_latents:
            outputs += (start,)
        return outputs


    def prepare_mask_latents(self, mask, masked_image, batch_size, height, width, dtype, device, generator,
                             do_classifier_free_guidance):
        """The UNet's extra input (mask + masked-image latents), with the masked image encoded in the VAE's own
        dtype (diffusers casts it to the UNet's, which breaks an fp32 VAE beside an fp16 UNet) and as the
        latent distribution's mode (diffusers samples it with generator[0] only, which would make image 0 of
        a batch differ from a single run at its seed).

        A1111's inpainting_mask_weight w blends the conditioning picture: lerp(original, masked original, w),
        so 1 is the masked picture (diffusers' own) and 0 the whole original."""
        if self._mask_weight != 1.0 and self._source_pixels is not None:
            source = self._source_pixels.to(device=masked_image.device, dtype=masked_image.dtype)
            masked_image = torch.lerp(source, masked_image, self._mask_weight)
        size = (height // self.vae_scale_factor, width // self.vae_scale_factor)
        mask = torch.nn.functional.interpolate(mask, size=size).to(device=device, dtype=dtype)
        masked_latents = encode_pixels(self.vae, masked_image, device).to(dtype=dtype)
        mask = mask.expand(batch_size, *mask.shape[1:]) if mask.shape[0] == 1 else mask
        if masked_latents.shape[0] == 1:
            masked_latents = masked_latents.expand(batch_size, *masked_latents.shape[1:])
        if mask.shape[0] != batch_size or masked_latents.shape[0] != batch_size:
            raise ValueError(f"{mask.shape[0]} masks / {masked_latents.shape[0]} images for batch {batch_size}")
        if do_classifier_free_guidance:
            mask, masked_latents = torch.cat([mask] * 2), torch.cat([masked_latents] * 2)
        return mask, masked_latents


def build_inpaint_pipeline(components) -> SeededInpaintPipeline:
    return SeededInpaintPipeline(
        **components.as_dict(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
