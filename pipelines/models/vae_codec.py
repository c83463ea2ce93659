"""Pixels <-> latents through the VAE, in the VAE's own dtype whatever the UNet runs in.

Every encode and decode of the engine goes through here, so mixed precision (fp16 UNet + fp32 VAE under
--no-half-vae) and the fp16 overflow fallback live in one place. diffusers' pipelines are asked for latents
(`output_type="latent"`) and never decode themselves.

Pictures above 1024 px a side (SD upscale outputs, big inpaint sources) are encoded and decoded in tiles
(diffusers' tiled VAE: 512 px tiles, blended overlaps), so memory stays bounded whatever the size; below
that the VAE runs whole, so ordinary outputs are exactly what an untiled decode gives. Under --medvram the
VAE goes back to the CPU after each use (device_policy.offload_after_use), not only when the next model
runs: it must not hold GPU memory through the UNet loop that follows an encode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

from pipelines.device_policy import offload_after_use

log = logging.getLogger(__name__)

NAN_FALLBACK_NOTICE = (
    "The VAE produced NaNs in half precision; it was switched to 32-bit floats and the decode redone "
    "(start with --no-half-vae to skip the failed attempt)."
)

TILE_ABOVE_PX = 1024  # a picture with a longer side is encoded / decoded in tiles
TILE_PX = 512  # the tile side in pixels (SD's training size: tiles look like what the VAE learned)


def pixels_from_images(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB pictures of one size -> (n, 3, h, w) float32 in -1..1."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def encode_pixels(vae, pixels: torch.Tensor, device: torch.device, tiling: bool | None = None) -> torch.Tensor:
    """(n, 3, h, w) in -1..1 -> scaled latents, in the VAE's dtype on `device`.

    The distribution's mode, not a sample: an init or conditioning latent must not draw from (and so shift)
    the per-image generators the sampler uses, or image i of a batch would depend on the batch.
    """
    pixels = pixels.to(device=device, dtype=vae.dtype)
    with _tiles(vae, _wants_tiles(tiling, pixels.shape[-2:], 1)):
        latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    offload_after_use(vae)
    return latents


def encode_images(vae, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    return encode_pixels(vae, pixels_from_images(images), device)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, notices: list[str] | None = None,
                   tiling: bool | None = None) -> torch.Tensor:
    """Scaled latents (any dtype) -> pixels (n, 3, h, w) in -1..1, decoded in the VAE's dtype.

    When a half-precision decode overflows (NaN/inf: SDXL's VAE does this, some fine-tuned SD VAEs too), the
    VAE is converted to float32 for good and the decode redone, as A1111's automatic --no-half-vae fallback
    does; the notice goes to the log once per conversion and into `notices` for the user.
    tiling: None decides by size (tiles above TILE_ABOVE_PX), True / False force it.
    """
    with _tiles(vae, _wants_tiles(tiling, latents.shape[-2:], vae_scale(vae))):
        pixels = _decode(vae, latents)
        if vae.dtype != torch.float32 and not torch.isfinite(pixels).all():
            log.warning(NAN_FALLBACK_NOTICE)
            vae.to(dtype=torch.float32)
            pixels = _decode(vae, latents)
            if notices is not None and NAN_FALLBACK_NOTICE not in notices:
                notices.append(NAN_FALLBACK_NOTICE)
    offload_after_use(vae)
    return pixels


def vae_scale(vae) -> int:
    """Pixels per latent (8 for SD's 4-level VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _wants_tiles(tiling: bool | None, shape: Sequence[int], scale: int) -> bool:
    return tiling if tiling is not None else max(shape) * scale > TILE_ABOVE_PX


@contextmanager
def _tiles(vae, on: bool) -> Iterator[None]:
    """diffusers' tiled encode/decode for one call (512 px tiles), the VAE's own settings restored after."""
    if not on:
        yield
        return
    saved = vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size
    vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = True, TILE_PX, TILE_PX // vae_scale(vae)
    try:
        yield
    finally:
        vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved


def _decode(vae, latents: torch.Tensor) -> torch.Tensor:
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample


def images_from_pixels(pixels: torch.Tensor) -> list[Image.Image]:
    """(n, 3, h, w) in -1..1 -> RGB pictures, rounded as diffusers' image processor does."""
    array = ((pixels.float() / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).detach().cpu().numpy()
    return [Image.fromarray((a * 255).round().astype("uint8"), "RGB") for a in array]
