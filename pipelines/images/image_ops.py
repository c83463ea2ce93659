"""Pure image geometry for img2img: flattening, A1111's resize modes, "resize by" sizes, latent upscale.

Everything here is a pure function of its arguments (PIL images in, new PIL images out; the inputs are never
modified). The integer arithmetic of the resize modes follows A1111's `images.resize_image` exactly so that
crops and offsets land on the same pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from pipelines.fields import MAX_SIDE, MIN_SIDE, ResizeMode

if TYPE_CHECKING:  # torch is only needed by upscale_latent; keep `import image_ops` cheap for the UI.
    import torch

LANCZOS = Image.Resampling.LANCZOS
LATENT_FACTOR = 8  # the SD VAE downsamples by 8 in each direction

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def flatten_onto_white(img: Image.Image) -> Image.Image:
    """Return an RGB image; any transparency is composited onto white (A1111 `images.flatten`)."""
    return flatten_onto(img, (255, 255, 255))


def flatten_onto(img: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """Return an RGB image; any transparency is composited onto `color` (A1111 `images.flatten` with the
    option img2img_background_color)."""
    has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    if not has_alpha:
        return img.convert("RGB") if img.mode != "RGB" else img.copy()
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*color, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def resize_image(img: Image.Image, mode: ResizeMode, width: int, height: int) -> Image.Image:
    """Fit `img` to width x height with one of A1111's resize modes.

    JUST_RESIZE stretches; CROP_AND_RESIZE scales to cover and crops the centred excess; RESIZE_AND_FILL
    scales to fit and fills the empty bands by stretching the image's edge rows/columns outward.
    LATENT_UPSCALE returns the image unchanged (the engine encodes at source size and interpolates the
    latent with `upscale_latent`). The result keeps the source mode (an "L" mask stays "L").
    """
    mode = ResizeMode(mode)
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if mode is ResizeMode.LATENT_UPSCALE:
        return img.copy()
    if mode is ResizeMode.JUST_RESIZE:
        return img.resize((width, height), resample=LANCZOS)
    if mode is ResizeMode.CROP_AND_RESIZE:
        return _crop_and_resize(img, width, height)
    return _resize_and_fill(img, width, height)


def _crop_and_resize(img: Image.Image, width: int, height: int) -> Image.Image:
    ratio = width / height
    src_ratio = img.width / img.height
    # Scale so the image covers the target; A1111's integer arithmetic, kept verbatim.
    src_w = width if ratio > src_ratio else img.width * height // img.height
    src_h = height if ratio <= src_ratio else img.height * width // img.width
    resized = img.resize((src_w, src_h), resample=LANCZOS)
    result = Image.new(img.mode, (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    return result


def _resize_and_fill(img: Image.Image, width: int, height: int) -> Image.Image:
    ratio = width / height
    src_ratio = img.width / img.height
    # Scale so the image fits inside the target.
    src_w = width if ratio < src_ratio else img.width * height // img.height
    src_h = height if ratio >= src_ratio else img.height * width // img.width
    resized = img.resize((src_w, src_h), resample=LANCZOS)
    result = Image.new(img.mode, (width, height))
    left, top = width // 2 - src_w // 2, height // 2 - src_h // 2
    result.paste(resized, box=(left, top))

    nearest = Image.Resampling.NEAREST
    # Stretch the edge row/column over each band. NEAREST makes every band line an exact copy of the edge
    # line (A1111's zero-height-box bicubic resize mixes in ringing from the 2-3 nearest lines instead).
    if ratio < src_ratio:
        bottom = height - top - src_h
        if top > 0:
            result.paste(resized.crop((0, 0, src_w, 1)).resize((width, top), nearest), (0, 0))
        if bottom > 0:
            edge = resized.crop((0, src_h - 1, src_w, src_h))
            result.paste(edge.resize((width, bottom), nearest), (0, top + src_h))
    elif ratio > src_ratio:
        right = width - left - src_w
        if left > 0:
            result.paste(resized.crop((0, 0, 1, src_h)).resize((left, height), nearest), (0, 0))
        if right > 0:
            edge = resized.crop((src_w - 1, 0, src_w, src_h))
            result.paste(edge.resize((right, height), nearest), (left + src_w, 0))
    return result


def snap_to_multiple_of_8(img: Image.Image) -> Image.Image:
    """Shrink each side to the nearest lower multiple of 8 (at least 8) so the VAE can encode it as is."""
    width = max(LATENT_FACTOR, img.width // LATENT_FACTOR * LATENT_FACTOR)
    height = max(LATENT_FACTOR, img.height // LATENT_FACTOR * LATENT_FACTOR)
    if (width, height) == img.size:
        return img.copy()
    return img.resize((width, height), resample=LANCZOS)


def scaled_size(img_w: int, img_h: int, scale: float) -> tuple[int, int]:
    """Target (width, height) for "Resize by": each side times scale, rounded to a multiple of 8, 64..2048."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")

    def side(length: int) -> int:
        snapped = int(length * scale / LATENT_FACTOR + 0.5) * LATENT_FACTOR
        return min(MAX_SIDE, max(MIN_SIDE, snapped))

    return side(img_w), side(img_h)


def latent_upscale_size(width: int, height: int) -> tuple[int, int]:
    """(latent height, latent width) for a width x height output, the order torch's interpolate wants."""
    return height // LATENT_FACTOR, width // LATENT_FACTOR


def upscale_latent(latent: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinearly resize a (B, C, h, w) latent to the latent of a width x height image (resize mode 3)."""
    import torch.nn.functional as F

    return F.interpolate(latent, size=latent_upscale_size(width, height), mode="bilinear")
