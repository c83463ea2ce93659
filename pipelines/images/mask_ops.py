"""Pure mask operations for inpainting, after A1111's `processing`, `masking` and `img2img` modules.

Masks are "L" images, white (255) = inpaint. The preparation order is invert -> grow -> blur
(`prepare_mask`). "Only masked" inpainting is masked_bbox -> expand_crop_region -> crop_for_inpaint ->
(engine) -> paste_back. No function modifies its inputs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from pipelines.fields import ResizeMode
from pipelines.images.image_ops import resize_image

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2), x2/y2 exclusive like PIL

ALPHA_THRESHOLD = 128  # A1111 create_binary_mask: alpha > 128 is "opaque"


# 1. Where masks come from ----------------------------------------------------------------------------------


def mask_from_image(mask_img: Image.Image) -> Image.Image:
    """An uploaded mask as "L", as A1111's `create_binary_mask` reads it: RGBA with some non-opaque alpha is
    its alpha thresholded at 128, opaque (alpha > 128) = inpaint (a stroke layer painted on a transparent
    background); anything else is its greyscale (white = inpaint).

    The other convention, transparent = inpaint, belongs to an *init image* with erased areas and no mask
    (see mask_from_transparency)."""
    if mask_img.mode == "RGBA" and mask_img.getextrema()[-1] != (255, 255):
        alpha = np.asarray(mask_img.getchannel("A"))
        return Image.fromarray((alpha > ALPHA_THRESHOLD).astype(np.uint8) * 255, "L")
    return mask_img.convert("L")


def mask_from_transparency(init_img: Image.Image) -> Image.Image | None:
    """The transparent pixels (alpha < 255) of an init image as a mask, or None if it is fully opaque.

    Only alpha is read: the (often black) RGB under transparent pixels never leaks into the mask.
    """
    if init_img.mode not in ("RGBA", "LA", "PA") and "transparency" not in init_img.info:
        return None
    alpha = np.asarray(init_img.convert("RGBA").getchannel("A"))
    if (alpha == 255).all():
        return None
    return Image.fromarray((alpha < 255).astype(np.uint8) * 255, "L")


def mask_from_sketch_difference(
    original: Image.Image, sketched: Image.Image, threshold: int = 0
) -> Image.Image:
    """Inpaint sketch: 255 where any RGB channel of the sketch differs from the original by more than
    `threshold`."""
    if original.size != sketched.size:
        raise ValueError(f"sketch size {sketched.size} differs from the original's {original.size}")
    before = np.asarray(original.convert("RGB"), dtype=np.int16)
    after = np.asarray(sketched.convert("RGB"), dtype=np.int16)
    changed = (np.abs(after - before) > threshold).any(axis=-1)
    return Image.fromarray(changed.astype(np.uint8) * 255, "L")


# 2. Shaping a mask: invert -> grow -> blur -----------------------------------------------------------------


def invert_mask(mask: Image.Image) -> Image.Image:
    """"Inpaint not masked": swap the inpainted and kept areas."""
    return ImageOps.invert(mask.convert("L"))


def grow_mask(mask: Image.Image, pixels: int) -> Image.Image:
    """Dilate (pixels > 0) or erode (pixels < 0) by a square of side 2*|pixels|+1: a masked square grows or
    shrinks by exactly |pixels| on each side. The image border neither grows nor eats the mask."""
    arr = np.asarray(mask.convert("L"))
    if pixels == 0:
        return Image.fromarray(arr.copy(), "L")
    reduce = np.maximum if pixels > 0 else np.minimum
    radius = abs(pixels)
    # A square window is separable: rows then columns. Edge padding repeats border pixels, which are already
    # inside every window that reaches past the border, so it behaves as "ignore what lies outside".
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(arr, pad, mode="edge")
        length = arr.shape[axis]
        out = padded.take(range(0, length), axis=axis)
        for offset in range(1, 2 * radius + 1):
            out = reduce(out, padded.take(range(offset, offset + length), axis=axis))
        arr = out
    return Image.fromarray(arr, "L")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's kernel for A1111's blur: size 2*int(2.5*sigma+0.5)+1, normalised exp(-x^2 / 2 sigma^2)."""
    half = int(2.5 * sigma + 0.5)
    x = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def _blur_rows(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Convolve every row with the Gaussian (use .T for columns)."""
    kernel = gaussian_kernel(sigma)
    half = len(kernel) // 2
    # cv2.GaussianBlur's default border is BORDER_REFLECT_101, which is numpy's "reflect".
    border = "reflect" if arr.shape[1] > 1 else "edge"
    padded = np.pad(arr, ((0, 0), (half, half)), mode=border)
    length = arr.shape[1]
    out = np.zeros(arr.shape, dtype=np.float64)
    term = np.empty_like(out)
    for i, weight in enumerate(kernel):
        np.multiply(padded[:, i : i + length], weight, out=term)
        out += term
    return out


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Gaussian blur with sigma blur_x horizontally then blur_y vertically (A1111 mask blur; 0 = none).

    Same kernel, sigma and border (REFLECT_101) as A1111's cv2.GaussianBlur, computed in float64 and
    rounded, so no OpenCV dependency; OpenCV's 8-bit fixed-point path may round a level differently.
    """
    if blur_x < 0 or blur_y < 0:
        raise ValueError(f"mask blur must be >= 0, got x={blur_x}, y={blur_y}")
    arr = np.asarray(mask.convert("L"), dtype=np.float64)
    if blur_x > 0:
        arr = _blur_rows(arr, blur_x)
    if blur_y > 0:
        arr = _blur_rows(np.ascontiguousarray(arr.T), blur_y).T
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def prepare_mask(
    mask: Image.Image, *, invert: bool = False, grow: int = 0, blur_x: float = 0, blur_y: float = 0
) -> Image.Image:
    """invert -> grow -> blur, the order A1111 applies them."""
    mask = invert_mask(mask) if invert else mask.convert("L")
    return blur_mask(grow_mask(mask, grow), blur_x, blur_y)


# 3. Masked content "fill" ----------------------------------------------------------------------------------

# (blur radius, repeats), widest first: each pass lays nearer colours over the coarse background.
_FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def fill_masked_area(img: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 `masking.fill`: replace masked pixels by the surrounding colours smeared inward.

    The unmasked image is premultiplied by (255 - mask) and blurred at decreasing radii; composited in
    turn, wide blurs reach deep into holes and narrow ones restore detail near their edges. The last,
    unblurred pass leaves fully unmasked pixels bit-identical.
    """
    if img.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from the image's {img.size}")
    keep = ImageOps.invert(mask.convert("L"))
    premultiplied = Image.new("RGBa", img.size)
    premultiplied.paste(img.convert("RGBA").convert("RGBa"), mask=keep)
    result = Image.new("RGBA", img.size)
    for radius, repeats in _FILL_PASSES:
        blurred = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


# 4. "Only masked": crop region, crop, paste back -----------------------------------------------------------


def masked_bbox(mask: Image.Image) -> Box | None:
    """Tight box (x2, y2 exclusive) around the non-zero mask pixels; None for an empty mask."""
    return mask.convert("L").getbbox()


def expand_crop_region(
    bbox: Box, padding: int, image_w: int, image_h: int, target_w: int, target_h: int
) -> Box:
    """A1111 get_crop_region + expand_crop_region: pad the box and clamp it to the image, then grow its short
    side to the target aspect ratio, shifting it back inside the image (clamped when the image is too
    small for the ratio)."""
    x1, y1, x2, y2 = bbox
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"crop box {bbox} is empty")
    x1, y1 = max(x1 - padding, 0), max(y1 - padding, 0)
    x2, y2 = min(x2 + padding, image_w), min(y2 + padding, image_h)

    if (x2 - x1) / (y2 - y1) > target_w / target_h:
        y1, y2 = _grow_span(y1, y2, (x2 - x1) / (target_w / target_h), image_h)
    else:
        x1, x2 = _grow_span(x1, x2, (y2 - y1) * (target_w / target_h), image_w)
    return x1, y1, x2, y2


def _grow_span(start: int, end: int, desired: float, limit: int) -> tuple[int, int]:
    """Grow [start, end) to `desired` length around its centre, keep it in [0, limit). A1111's arithmetic."""
    diff = int(desired - (end - start))
    start -= diff // 2
    end += diff - diff // 2
    if end >= limit:
        start -= end - limit
        end = limit
    if start < 0:
        end -= start
        start = 0
    return start, min(end, limit)


def crop_for_inpaint(img: Image.Image, region: Box, width: int, height: int) -> Image.Image:
    """The region of img, resized to the processing size with "resize and fill" (A1111 only-masked)."""
    return resize_image(img.crop(region), ResizeMode.RESIZE_AND_FILL, width, height)


def composite_original(original: Image.Image, result: Image.Image, blurred_mask: Image.Image) -> Image.Image:
    """Blend result over original through the mask: mask 0 pixels are bit-identical to the original,
    mask 255 pixels are the result's, values between mix linearly."""
    if not (original.size == result.size == blurred_mask.size):
        sizes = f"original {original.size}, result {result.size}, mask {blurred_mask.size}"
        raise ValueError(f"sizes differ: {sizes}")
    mode = original.mode if original.mode in ("RGB", "RGBA", "L") else "RGB"
    return Image.composite(result.convert(mode), original.convert(mode), blurred_mask.convert("L"))


def paste_back(
    original: Image.Image, inpainted_crop: Image.Image, region: Box, blurred_mask: Image.Image
) -> Image.Image:
    """Undo crop_for_inpaint and composite: the crop is resized back to the region with "crop and resize"
    (dropping the fill bands), pasted into a copy of the original, then composited through the full-size
    blurred mask so everything outside the mask is exactly the original."""
    x1, y1, x2, y2 = region
    restored = resize_image(inpainted_crop, ResizeMode.CROP_AND_RESIZE, x2 - x1, y2 - y1)
    pasted = original.copy()
    pasted.paste(restored.convert(original.mode), (x1, y1))
    return composite_original(original, pasted, blurred_mask)
