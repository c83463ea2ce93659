"""A1111's "apply colour correction to img2img results to match original colours": pure functions.

A1111 (`processing.setup_color_correction` / `apply_color_correction`): convert the first init image to
LAB once; for every output, match each LAB channel's histogram to the reference's, convert back to RGB,
then keep the output's own luminosity (a "Luminosity" layer blend of the output over the corrected image),
so only hue and saturation are pulled back towards the original while the generated shading stays.

Differences from A1111, both deliberate: the LAB conversion is exact float CIELAB (sRGB, D65) in numpy
instead of OpenCV's 8-bit LAB (no cv2/skimage dependency, no 8-bit rounding of a and b), and the
histogram matching works on those floats (skimage's quantile mapping, without truncation to uint8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# sRGB (linear) <-> CIE XYZ, D65 white (IEC 61966-2-1).
_RGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = _RGB_TO_XYZ.sum(axis=1)  # XYZ of RGB (1, 1, 1): (0.95047, 1.0, 1.08883)
_DELTA = 6 / 29
# The luminosity weights of the blend A1111 uses (blendmodes' BlendType.LUMINOSITY: Rec. 601 luma).
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class ColorReference:
    """The colour distribution to match: per LAB channel, the sorted distinct values and their quantiles."""

    values: tuple[np.ndarray, np.ndarray, np.ndarray]
    quantiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    mean_lab: tuple[float, float, float]


# 1. Colour space --------------------------------------------------------------------------------------
def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (or 0..255 float) sRGB H x W x 3 -> float64 CIELAB (L 0..100, a/b about -128..127), D65."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4 / 29)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB -> float sRGB in 0..1 (out-of-gamut values clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _D65_WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _to_uint8(rgb01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb01 * 255.0), 0, 255).astype(np.uint8)


# 2. Histogram matching ------------------------------------------------------------------------------
# LAB values are binned at 1/64 of a unit (far below one 8-bit RGB step) so the distributions come from a
# linear-time bincount instead of sorting every pixel: 1024 x 1024 in a fraction of a second.
_BINS_PER_UNIT = 64


def _binned(channel: np.ndarray) -> tuple[np.ndarray, int]:
    bins = np.rint(channel.ravel() * _BINS_PER_UNIT).astype(np.int64)
    low = int(bins.min())
    return bins - low, low


def _distribution(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The channel's distinct (binned) values and the fraction of pixels at or below each."""
    bins, low = _binned(channel)
    counts = np.bincount(bins)
    present = np.flatnonzero(counts)
    return (present + low) / _BINS_PER_UNIT, np.cumsum(counts[present]) / channel.size


def _match_channel(channel: np.ndarray, values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """skimage.exposure's cumulative-distribution matching: each source value goes to the reference value
    at the same quantile (linearly interpolated)."""
    bins, _ = _binned(channel)
    counts = np.bincount(bins)
    src_quantiles = np.cumsum(counts) / channel.size  # for every bin; only the occupied ones are looked up
    mapped = np.interp(src_quantiles, quantiles, values)
    return mapped[bins].reshape(channel.shape)


# 3. Luminosity blend -----------------------------------------------------------------------------------
def _set_luminosity(colours: np.ndarray, luminosity: np.ndarray) -> np.ndarray:
    """W3C compositing SetLum: shift each pixel to the given luma, then pull out-of-range channels back
    towards the luma (ClipColor), keeping the hue. Colours are float RGB in 0..1."""
    shifted = colours + (luminosity - colours @ _LUMA)[..., None]
    lum = (shifted @ _LUMA)[..., None]
    low = shifted.min(axis=-1, keepdims=True)
    high = shifted.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = np.where(low < 0, lum + (shifted - lum) * lum / (lum - low), shifted)
        high = shifted.max(axis=-1, keepdims=True)
        shifted = np.where(high > 1, lum + (shifted - lum) * (1 - lum) / (high - lum), shifted)
    return np.nan_to_num(shifted, nan=0.0)


# 4. The public pair -----------------------------------------------------------------------------------
def color_reference(image: Image.Image) -> ColorReference:
    """Calibrate on the (first) init image: its LAB distribution, computed once per run."""
    lab = srgb_to_lab(np.asarray(image.convert("RGB")))
    channels = [_distribution(lab[..., i]) for i in range(3)]
    return ColorReference(
        values=tuple(v for v, _ in channels),  # type: ignore[arg-type]
        quantiles=tuple(q for _, q in channels),  # type: ignore[arg-type]
        mean_lab=tuple(float(m) for m in lab.reshape(-1, 3).mean(axis=0)),  # type: ignore[arg-type]
    )


def apply_color_correction(ref: ColorReference, image: Image.Image, *,
                           keep_luminosity: bool = True) -> Image.Image:
    """Match image's LAB histograms to ref's; with keep_luminosity (A1111's behaviour), the result keeps the
    image's own luma and takes only hue and saturation from the matched colours. Returns an RGB image of
    the same size; an image matched to its own reference comes back (nearly) unchanged."""
    rgb = np.asarray(image.convert("RGB"))
    lab = srgb_to_lab(rgb)
    matched = np.stack([_match_channel(lab[..., i], ref.values[i], ref.quantiles[i]) for i in range(3)],
                       axis=-1)
    corrected = lab_to_srgb(matched)
    if keep_luminosity:
        corrected = _set_luminosity(corrected, rgb / 255.0 @ _LUMA)
    return Image.fromarray(_to_uint8(corrected), "RGB")
