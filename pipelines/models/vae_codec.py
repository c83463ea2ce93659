"""Pixels <-> latents through the VAE, in the VAE's own dtype whatever the UNet runs in.

Every encode and decode of the engine goes through here, so mixed precision (fp16 UNet + fp32 VAE under
--no-half-vae) and the fp16 overflow fallback live in one place. diffusers' pipelines are asked for latents
(`output_type="latent"`) and never decode themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

NAN_FALLBACK_NOTICE = (
    "The VAE produced NaNs in half precision; it was switched to 32-bit floats and the decode redone "
    "(start with --no-half-vae to skip the failed attempt)."
)


def pixels_from_images(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB pictures of one size -> (n, 3, h, w) float32 in -1..1."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def encode_pixels(vae, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(n, 3, h, w) in -1..1 -> scaled latents, in the VAE's dtype on `device`.

    The distribution's mode, not a sample: an init or conditioning latent must not draw from (and so shift)
    the per-image generators the sampler uses, or image i of a batch would depend on the batch.
    """
    pixels = pixels.to(device=device, dtype=vae.dtype)
    return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor


def encode_images(vae, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    return encode_pixels(vae, pixels_from_images(images), device)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, notices: list[str] | None = None) -> torch.Tensor:
    """Scaled latents (any dtype) -> pixels (n, 3, h, w) in -1..1, decoded in the VAE's dtype.

    When a half-precision decode overflows (NaN/inf: SDXL's VAE does this, some fine-tuned SD VAEs too), the
    VAE is converted to float32 for good and the decode redone, as A1111's automatic --no-half-vae fallback
    does; the notice goes to the log once per conversion and into `notices` for the user.
    """
    pixels = _decode(vae, latents)
    if vae.dtype != torch.float32 and not torch.isfinite(pixels).all():
        log.warning(NAN_FALLBACK_NOTICE)
        vae.to(dtype=torch.float32)
        pixels = _decode(vae, latents)
        if notices is not None and NAN_FALLBACK_NOTICE not in notices:
            notices.append(NAN_FALLBACK_NOTICE)
    return pixels


def _decode(vae, latents: torch.Tensor) -> torch.Tensor:
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample


def images_from_pixels(pixels: torch.Tensor) -> list[Image.Image]:
    """(n, 3, h, w) in -1..1 -> RGB pictures, rounded as diffusers' image processor does."""
    array = ((pixels.float() / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).detach().cpu().numpy()
    return [Image.fromarray((a * 255).round().astype("uint8"), "RGB") for a in array]
