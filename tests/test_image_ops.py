"""Exact geometry of the resize modes and size helpers (pipelines/images/image_ops.py)."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.fields import ResizeMode
from pipelines.images.image_ops import (
    flatten_onto_white,
    latent_upscale_size,
    resize_image,
    scaled_size,
    snap_to_multiple_of_8,
    upscale_latent,
)

LANCZOS = Image.Resampling.LANCZOS


def coordinate_image(width: int, height: int) -> Image.Image:
    """Pixel (x, y) has colour (x % 256, y % 256, 100): every pixel says where it came from."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    arr = np.stack([xs % 256, ys % 256, np.full_like(xs, 100)], axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def as_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int32)


# flatten_onto_white ----------------------------------------------------------------------------------------


def test_flatten_composites_transparency_on_white():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (0, 0, 0, 0)  # transparent black: becomes white
    rgba[0, 2] = (0, 0, 0, 128)  # half black: grey
    out = flatten_onto_white(Image.fromarray(rgba, "RGBA"))
    assert out.mode == "RGB"
    arr = as_array(out)
    assert tuple(arr[0, 0]) == (10, 20, 30)
    assert tuple(arr[0, 1]) == (255, 255, 255)
    assert all(abs(v - 127) <= 1 for v in arr[0, 2])


def test_flatten_passes_rgb_through_and_converts_other_modes():
    rgb = noise_image(5, 4)
    assert np.array_equal(as_array(flatten_onto_white(rgb)), as_array(rgb))
    grey = Image.new("L", (3, 3), 77)
    out = flatten_onto_white(grey)
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (77, 77, 77)


# resize modes ----------------------------------------------------------------------------------------------


def test_just_resize_stretches_to_exact_size():
    out = resize_image(noise_image(200, 100), ResizeMode.JUST_RESIZE, 64, 96)
    assert out.size == (64, 96)
    expected = noise_image(200, 100).resize((64, 96), LANCZOS)
    assert np.array_equal(as_array(out), as_array(expected))


def test_crop_and_resize_without_scaling_keeps_the_centre_columns():
    # 200x100 -> 100x100: scale 1 (no resampling), so output pixel (x, y) is source pixel (x + 50, y).
    out = resize_image(coordinate_image(200, 100), ResizeMode.CROP_AND_RESIZE, 100, 100)
    arr = as_array(out)
    assert out.size == (100, 100)
    assert np.array_equal(arr[:, :, 0], np.tile(np.arange(50, 150), (100, 1)))
    assert np.array_equal(arr[:, :, 1], np.tile(np.arange(100)[:, None], (1, 100)))


def test_crop_and_resize_tall_image_keeps_the_centre_rows():
    out = resize_image(coordinate_image(100, 300), ResizeMode.CROP_AND_RESIZE, 100, 100)
    arr = as_array(out)
    assert np.array_equal(arr[:, 0, 1], np.arange(100, 200))
    assert np.array_equal(arr[0, :, 0], np.arange(100))


def test_crop_and_resize_scales_to_cover_then_crops_the_centre():
    # 200x100 -> 64x64: scaled to 128x64 (A1111: 200*64//100), pasted at x = 32 - 64 = -32.
    src = noise_image(200, 100)
    out = resize_image(src, ResizeMode.CROP_AND_RESIZE, 64, 64)
    expected = src.resize((128, 64), LANCZOS).crop((32, 0, 96, 64))
    assert np.array_equal(as_array(out), as_array(expected))


def test_crop_and_resize_uses_a1111_integer_offsets_for_odd_sizes():
    # 203x100 -> 64x64: src_w = 203*64//100 = 129 (odd). A1111 pastes at 64//2 - 129//2 = -32
    # (not (64 - 129)//2 = -33), so the output starts at resized column 32.
    src = noise_image(203, 100, seed=1)
    out = resize_image(src, ResizeMode.CROP_AND_RESIZE, 64, 64)
    expected = src.resize((129, 64), LANCZOS).crop((32, 0, 96, 64))
    assert np.array_equal(as_array(out), as_array(expected))


def test_resize_and_fill_wide_source_fills_top_and_bottom_with_edge_rows():
    # 200x100 -> 64x64: fitted to 64x32 at y = 32 - 16 = 16, bands of 16 rows above and below.
    src = noise_image(200, 100, seed=2)
    out = as_array(resize_image(src, ResizeMode.RESIZE_AND_FILL, 64, 64))
    fitted = as_array(src.resize((64, 32), LANCZOS))
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[16:48], fitted)
    assert np.array_equal(out[:16], np.broadcast_to(fitted[0], (16, 64, 3)))
    assert np.array_equal(out[48:], np.broadcast_to(fitted[-1], (16, 64, 3)))


def test_resize_and_fill_tall_source_fills_left_and_right_with_edge_columns():
    # 60x120 -> 64x64: fitted to 32x64 at x = 16.
    src = noise_image(60, 120, seed=3)
    out = as_array(resize_image(src, ResizeMode.RESIZE_AND_FILL, 64, 64))
    fitted = as_array(src.resize((32, 64), LANCZOS))
    assert np.array_equal(out[:, 16:48], fitted)
    assert np.array_equal(out[:, :16], np.broadcast_to(fitted[:, :1], (64, 16, 3)))
    assert np.array_equal(out[:, 48:], np.broadcast_to(fitted[:, -1:], (64, 16, 3)))


def test_resize_and_fill_same_ratio_is_a_plain_resize():
    src = noise_image(128, 64, seed=4)
    out = resize_image(src, ResizeMode.RESIZE_AND_FILL, 64, 32)
    assert np.array_equal(as_array(out), as_array(src.resize((64, 32), LANCZOS)))


def test_resize_keeps_mask_mode():
    mask = Image.new("L", (100, 50), 255)
    for mode in (ResizeMode.JUST_RESIZE, ResizeMode.CROP_AND_RESIZE, ResizeMode.RESIZE_AND_FILL):
        out = resize_image(mask, mode, 64, 64)
        assert out.mode == "L" and out.size == (64, 64)
        assert np.asarray(out).min() == 255  # fill bands of a white mask are white, not black


def test_latent_upscale_mode_returns_the_source_unchanged():
    src = noise_image(96, 72)
    out = resize_image(src, ResizeMode.LATENT_UPSCALE, 512, 512)
    assert out.size == (96, 72) and out is not src
    assert np.array_equal(as_array(out), as_array(src))


def test_resize_accepts_plain_ints_and_rejects_bad_sizes():
    assert resize_image(noise_image(10, 10), 0, 16, 8).size == (16, 8)
    with pytest.raises(ValueError):
        resize_image(noise_image(10, 10), 7, 16, 8)
    with pytest.raises(ValueError):
        resize_image(noise_image(10, 10), ResizeMode.JUST_RESIZE, 0, 8)


# size helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((512, 512), 1.0, (512, 512)),
        ((500, 300), 1.0, (504, 304)),  # 62.5 + .5 -> 63 * 8; 37.5 + .5 -> 38 * 8
        ((500, 300), 0.5, (248, 152)),  # 31.25 -> 31; 18.75 -> 19
        ((100, 40), 0.05, (64, 64)),  # clamped up
        ((1200, 800), 4.0, (2048, 2048)),  # clamped down
    ],
)
def test_scaled_size_rounds_to_multiple_of_8_and_clamps(size, scale, expected):
    assert scaled_size(*size, scale) == expected


def test_scaled_size_rejects_non_positive_scale():
    with pytest.raises(ValueError):
        scaled_size(512, 512, 0)


def test_snap_to_multiple_of_8_shrinks_to_lower_multiple():
    assert snap_to_multiple_of_8(noise_image(517, 300)).size == (512, 296)
    same = noise_image(64, 48)
    snapped = snap_to_multiple_of_8(same)
    assert snapped.size == (64, 48) and np.array_equal(as_array(snapped), as_array(same))
    assert snap_to_multiple_of_8(noise_image(5, 12)).size == (8, 8)


def test_latent_upscale_shape():
    assert latent_upscale_size(768, 512) == (64, 96)
    latent = torch.randn(2, 4, 9, 12)
    out = upscale_latent(latent, 768, 512)
    assert out.shape == (2, 4, 64, 96)
    # Bilinear: a constant latent stays constant.
    const = upscale_latent(torch.full((1, 4, 8, 8), 0.5), 128, 64)
    assert const.shape == (1, 4, 8, 16) and torch.allclose(const, torch.full_like(const, 0.5))
