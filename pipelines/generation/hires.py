"""Hires. fix geometry and upscaling, as A1111's StableDiffusionProcessingTxt2Img does it.

The second pass starts from the first pass's result made bigger: either its latents resized by one of the
"Latent" modes (torch interpolate), or its decoded picture resized by an upscaler (A1111's
images.resize_image(0, ..., upscaler_name)) and encoded again. Pure functions over tensors and pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipelines.models.upscalers import upscale

LATENT_FACTOR = 8  # A1111's opt_f


@dataclass(frozen=True)
class LatentMode:
    mode: str  # torch.nn.functional.interpolate's mode
    antialias: bool


# A1111's shared.latent_upscale_modes, in its order ("Latent" is its default mode).
LATENT_UPSCALE_MODES: dict[str, LatentMode] = {
    "Latent": LatentMode("bilinear", False),
    "Latent (antialiased)": LatentMode("bilinear", True),
    "Latent (bicubic)": LatentMode("bicubic", False),
    "Latent (bicubic antialiased)": LatentMode("bicubic", True),
    "Latent (nearest)": LatentMode("nearest", False),
    "Latent (nearest-exact)": LatentMode("nearest-exact", False),
}
DEFAULT_LATENT_MODE = "Latent"


@dataclass(frozen=True)
class HiresTarget:
    """The second pass's size: upscale to (upscale_x, upscale_y), then cut truncate_x/y latent columns/rows
    (A1111 crops the latent when both resize sides are given and the aspect ratio differs)."""

    upscale_x: int
    upscale_y: int
    truncate_x: int = 0
    truncate_y: int = 0

    @property
    def width(self) -> int:
        return self.upscale_x - self.truncate_x * LATENT_FACTOR

    @property
    def height(self) -> int:
        return self.upscale_y - self.truncate_y * LATENT_FACTOR


def hires_target(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0) -> HiresTarget:
    """A1111 calculate_target_resolution: "Upscale by" when both resize sides are 0; one side given keeps
    the aspect ratio; both given: cover the box, then crop the latent to it."""
    if resize_x == 0 and resize_y == 0:
        return HiresTarget(int(width * scale), int(height * scale))
    if resize_y == 0:
        return HiresTarget(resize_x, resize_x * height // width)
    if resize_x == 0:
        return HiresTarget(resize_y * width // height, resize_y)
    if width / height < resize_x / resize_y:
        to_x, to_y = resize_x, resize_x * height // width
    else:
        to_x, to_y = resize_y * width // height, resize_y
    return HiresTarget(to_x, to_y, (to_x - resize_x) // LATENT_FACTOR, (to_y - resize_y) // LATENT_FACTOR)


def upscale_latents(latents: torch.Tensor, mode_name: str, target: HiresTarget) -> torch.Tensor:
    """A latent mode's resize to the target's latent size (before the crop)."""
    mode = LATENT_UPSCALE_MODES[mode_name]
    size = (target.upscale_y // LATENT_FACTOR, target.upscale_x // LATENT_FACTOR)
    # interpolate's bicubic/antialias kernels want float32 on CPU; the result takes the latents' dtype back.
    resized = torch.nn.functional.interpolate(latents.float(), size=size, mode=mode.mode, antialias=mode.antialias)
    return resized.to(latents.dtype)


def crop_latents(latents: torch.Tensor, target: HiresTarget) -> torch.Tensor:
    """A1111's truncate: half the extra rows/columns off each side (the odd one off the end)."""
    ty, tx = target.truncate_y, target.truncate_x
    return latents[:, :, ty // 2:latents.shape[2] - (ty + 1) // 2, tx // 2:latents.shape[3] - (tx + 1) // 2]


def upscale_picture(image: Image.Image, upscaler: str, width: int, height: int, models_dir: Path | None,
                    models: Any = None) -> Image.Image:
    """A1111 images.resize_image(0, image, width, height, upscaler_name): "None" is a plain Lanczos resize;
    any other upscaler first scales up by the larger factor, then Lanczos gives the exact size."""
    image = image.convert("RGB")
    if upscaler == "None":
        return image.resize((width, height), resample=Image.Resampling.LANCZOS)
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = upscale(image, upscaler, scale, models_dir, models=models)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image
