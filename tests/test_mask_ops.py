"""Exact behaviour of the inpainting mask functions (pipelines/images/mask_ops.py)."""

import numpy as np
import pytest
from PIL import Image

from pipelines.images.mask_ops import (
    blur_mask,
    composite_original,
    crop_for_inpaint,
    expand_crop_region,
    fill_masked_area,
    gaussian_kernel,
    grow_mask,
    invert_mask,
    mask_from_image,
    mask_from_sketch_difference,
    mask_from_transparency,
    masked_bbox,
    paste_back,
    prepare_mask,
)


def rect_mask(width, height, box, value=255):
    arr = np.zeros((height, width), dtype=np.uint8)
    x1, y1, x2, y2 = box
    arr[y1:y2, x1:x2] = value
    return Image.fromarray(arr, "L")


def noise_image(width, height, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def arr(img):
    return np.asarray(img).astype(np.int32)


# mask sources ----------------------------------------------------------------------------------------------


def test_rgba_mask_is_its_alpha_opaque_is_inpaint_as_a1111_create_binary_mask():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent: kept
    rgba[0:2, 0:2] = (0, 0, 0, 255)  # opaque black: inpaint, although its RGB is black
    rgba[2, 2] = (255, 255, 255, 100)  # mostly transparent white: kept, although its RGB is white
    rgba[3, 3] = (0, 0, 0, 129)  # just past the threshold: inpaint
    rgba[3, 2] = (255, 255, 255, 128)  # at the threshold: kept
    mask = arr(mask_from_image(Image.fromarray(rgba, "RGBA")))
    expected = np.zeros((4, 4), dtype=np.int32)
    expected[0:2, 0:2] = 255
    expected[3, 3] = 255
    assert np.array_equal(mask, expected)


def test_opaque_or_rgb_mask_is_its_greyscale():
    rgb = Image.new("RGB", (2, 2), (200, 200, 200))
    assert arr(mask_from_image(rgb)).tolist() == [[200, 200], [200, 200]]
    opaque = Image.new("RGBA", (2, 2), (10, 10, 10, 255))
    assert arr(mask_from_image(opaque)).tolist() == [[10, 10], [10, 10]]


def test_mask_from_transparency_reads_alpha_only():
    rgba = np.full((4, 5, 4), 255, dtype=np.uint8)
    rgba[1:3, 2:4] = (0, 0, 0, 0)  # transparent black hole
    rgba[0, 0] = (255, 255, 255, 254)  # barely transparent white: still masked
    mask = arr(mask_from_transparency(Image.fromarray(rgba, "RGBA")))
    expected = np.zeros((4, 5), dtype=np.int32)
    expected[1:3, 2:4] = 255
    expected[0, 0] = 255
    assert np.array_equal(mask, expected)


def test_mask_from_transparency_none_when_opaque():
    assert mask_from_transparency(Image.new("RGBA", (3, 3), (0, 0, 0, 255))) is None
    assert mask_from_transparency(Image.new("RGB", (3, 3))) is None


def test_sketch_difference_marks_changed_pixels():
    original = noise_image(6, 5)
    sketched = original.copy()
    changed = tuple((c + 50) % 256 for c in original.getpixel((1, 2)))  # each channel moves by 50 or 206
    sketched.putpixel((1, 2), changed)
    sketched.putpixel((4, 0), tuple(min(255, c + 3) for c in original.getpixel((4, 0))))
    mask = arr(mask_from_sketch_difference(original, sketched))
    assert mask[2, 1] == 255 and mask[0, 4] == 255 and mask.sum() == 2 * 255
    loose = arr(mask_from_sketch_difference(original, sketched, threshold=10))
    assert loose[2, 1] == 255 and loose[0, 4] == 0 and loose.sum() == 255
    with pytest.raises(ValueError):
        mask_from_sketch_difference(original, noise_image(5, 5))


# invert / grow / blur --------------------------------------------------------------------------------------


def test_invert_mask():
    assert arr(invert_mask(rect_mask(4, 4, (1, 1, 3, 3)))).sum() == (16 - 4) * 255


@pytest.mark.parametrize("pixels", [1, 3, 7])
def test_grow_square_by_exactly_n(pixels):
    grown = arr(grow_mask(rect_mask(40, 40, (15, 18, 25, 22)), pixels))
    bbox = masked_bbox(Image.fromarray(grown.astype(np.uint8)))
    assert bbox == (15 - pixels, 18 - pixels, 25 + pixels, 22 + pixels)
    assert grown.sum() == 255 * (10 + 2 * pixels) * (4 + 2 * pixels)  # a full rectangle, no holes


@pytest.mark.parametrize("pixels", [1, 2, 4])
def test_shrink_square_by_exactly_n(pixels):
    shrunk = arr(grow_mask(rect_mask(40, 40, (10, 10, 30, 30)), -pixels))
    bbox = masked_bbox(Image.fromarray(shrunk.astype(np.uint8)))
    assert bbox == (10 + pixels, 10 + pixels, 30 - pixels, 30 - pixels)
    assert shrunk.sum() == 255 * (20 - 2 * pixels) ** 2


def test_grow_stops_at_border_and_shrink_does_not_eat_the_border():
    grown = arr(grow_mask(rect_mask(10, 10, (0, 0, 2, 2)), 3))
    assert masked_bbox(Image.fromarray(grown.astype(np.uint8))) == (0, 0, 5, 5)
    full = arr(grow_mask(Image.new("L", (8, 8), 255), -2))
    assert full.min() == 255
    square = rect_mask(8, 8, (2, 2, 5, 5))
    assert np.array_equal(arr(grow_mask(square, 0)), arr(square))


def test_blur_zero_is_identity():
    mask = rect_mask(20, 20, (5, 5, 12, 9))
    assert np.array_equal(arr(blur_mask(mask, 0, 0)), arr(mask))


def test_gaussian_kernel_matches_opencv_size_rule():
    assert len(gaussian_kernel(4)) == 2 * int(2.5 * 4 + 0.5) + 1 == 21
    assert len(gaussian_kernel(1)) == 7
    k = gaussian_kernel(4)
    assert abs(k.sum() - 1) < 1e-12 and np.allclose(k, k[::-1]) and k.argmax() == 10


def test_blur_is_symmetric_and_separable_per_axis():
    mask = rect_mask(61, 61, (15, 15, 46, 46))  # centred 31x31 square
    blurred = arr(blur_mask(mask, 4, 4))
    assert np.array_equal(blurred, blurred[::-1, :]) and np.array_equal(blurred, blurred[:, ::-1])
    assert np.array_equal(blurred, blurred.T)
    assert blurred[30, 30] == 255 and blurred[0, 0] == 0
    assert 0 < blurred[30, 15] < 255  # the edge is soft
    only_x = arr(blur_mask(mask, 4, 0))
    assert np.array_equal(only_x[14], np.zeros(61)) and 0 < only_x[30, 14] < 255  # only along x


def test_blur_of_a_line_follows_the_gaussian():
    mask = rect_mask(41, 1, (20, 0, 21, 1))
    blurred = arr(blur_mask(mask, 2, 0))[0]
    expected = np.rint(255 * gaussian_kernel(2)).astype(int)
    half = len(expected) // 2
    assert np.array_equal(blurred[20 - half : 21 + half], expected)


def test_prepare_mask_order_is_invert_grow_blur():
    mask = rect_mask(30, 30, (10, 10, 20, 20))
    prepared = arr(prepare_mask(mask, invert=True, grow=2))
    # Inverted first, so the kept square is what the grow eats: 10x10 -> 6x6 of zeros.
    assert (prepared == 0).sum() == 36
    with pytest.raises(ValueError):
        blur_mask(mask, -1, 0)


# fill ------------------------------------------------------------------------------------------------------


def test_fill_keeps_unmasked_pixels_and_smears_colours_in():
    left_red_right_blue = np.zeros((64, 64, 3), dtype=np.uint8)
    left_red_right_blue[:, :32] = (255, 0, 0)
    left_red_right_blue[:, 32:] = (0, 0, 255)
    img = Image.fromarray(left_red_right_blue)
    mask = rect_mask(64, 64, (20, 20, 44, 44))
    filled = arr(fill_masked_area(img, mask))
    outside = arr(mask) == 0
    assert np.array_equal(filled[outside], left_red_right_blue.astype(np.int32)[outside])
    # Masked pixels take the colour of their side, not black or the original.
    left_hole, right_hole = filled[32, 22], filled[32, 41]
    assert left_hole[0] > 150 and left_hole[2] < 100
    assert right_hole[2] > 150 and right_hole[0] < 100
    assert filled[20:44, 20:44].sum(axis=-1).min() > 150  # nothing left black inside the hole


def test_fill_with_empty_mask_is_identity():
    img = noise_image(32, 32)
    assert np.array_equal(arr(fill_masked_area(img, Image.new("L", (32, 32), 0))), arr(img))


# only-masked geometry --------------------------------------------------------------------------------------


def test_masked_bbox_exact_and_none_when_empty():
    assert masked_bbox(rect_mask(100, 80, (10, 20, 31, 45))) == (10, 20, 31, 45)
    assert masked_bbox(rect_mask(100, 80, (99, 79, 100, 80), value=1)) == (99, 79, 100, 80)
    assert masked_bbox(Image.new("L", (10, 10), 0)) is None


def test_expand_crop_region_pads_then_grows_to_aspect():
    # 20x10 box + 5 padding -> 30x20 at (5, 15)-(35, 35); square target: grow height by 10, 5 each side.
    assert expand_crop_region((10, 20, 30, 30), 5, 200, 200, 512, 512) == (5, 10, 35, 40)


def test_expand_crop_region_grows_width_for_wide_target():
    # 10x10 box, target 2:1 -> desired width 20, grow 10: 5 each side.
    assert expand_crop_region((50, 50, 60, 60), 0, 200, 200, 1024, 512) == (45, 50, 65, 60)


def test_expand_crop_region_odd_growth_goes_after():
    # 10x11 box, square target -> width grows by 1: x1 -= 0, x2 += 1 (A1111's diff//2 split).
    assert expand_crop_region((50, 50, 60, 61), 0, 200, 200, 512, 512) == (50, 50, 61, 61)


def test_expand_crop_region_clamps_padding_at_borders():
    # Padding clamps to (0, 0, 30, 40); widening to 40 gives x -5..35, shifted right to 0..40.
    assert expand_crop_region((2, 3, 20, 30), 10, 100, 100, 64, 64) == (0, 0, 40, 40)


def test_expand_crop_region_shifts_inside_right_edge():
    # Box flush with the right edge: growing by 20 would pass x=100, so it shifts left instead.
    assert expand_crop_region((90, 40, 100, 70), 0, 100, 100, 64, 64) == (70, 40, 100, 70)


def test_expand_crop_region_clamps_when_image_too_small_for_ratio():
    # A full-height box in a 100x50 image cannot become 1:2 (tall); it is clamped to the image height.
    assert expand_crop_region((40, 0, 60, 50), 0, 100, 50, 256, 1024) == (40, 0, 60, 50)
    assert expand_crop_region((40, 10, 60, 20), 0, 100, 30, 64, 256) == (40, 0, 60, 30)
    with pytest.raises(ValueError):
        expand_crop_region((5, 5, 5, 9), 0, 10, 10, 64, 64)


def test_crop_for_inpaint_is_crop_then_resize_and_fill():
    img = noise_image(100, 100, seed=5)
    out = crop_for_inpaint(img, (10, 20, 50, 40), 64, 64)  # 40x20 crop -> 64x32 with 16-row bands
    expected = img.crop((10, 20, 50, 40)).resize((64, 32), Image.Resampling.LANCZOS)
    assert out.size == (64, 64)
    assert np.array_equal(arr(out)[16:48], arr(expected))
    assert np.array_equal(arr(out)[:16], np.broadcast_to(arr(expected)[0], (16, 64, 3)))


# composite / paste back ------------------------------------------------------------------------------------


def test_composite_original_outside_mask_is_bit_identical():
    original, result = noise_image(50, 40, seed=6), noise_image(50, 40, seed=7)
    mask = blur_mask(rect_mask(50, 40, (10, 10, 30, 25)), 3, 3)
    out = arr(composite_original(original, result, mask))
    m = arr(mask)
    assert np.array_equal(out[m == 0], arr(original)[m == 0])
    assert np.array_equal(out[m == 255], arr(result)[m == 255])
    partial = (m > 0) & (m < 255)
    assert partial.any()


def test_paste_back_with_blur_zero_keeps_everything_outside_the_mask():
    original = noise_image(120, 90, seed=8)
    mask = rect_mask(120, 90, (40, 30, 70, 50))
    region = expand_crop_region(masked_bbox(mask), 8, 120, 90, 64, 64)
    crop = crop_for_inpaint(original, region, 64, 64)
    inpainted = Image.new("RGB", crop.size, (0, 255, 0))  # the "model" paints the crop green
    out = arr(paste_back(original, inpainted, region, blur_mask(mask, 0, 0)))
    inside = arr(mask) == 255
    assert np.array_equal(out[~inside], arr(original)[~inside])
    assert (out[inside] == (0, 255, 0)).all()


def test_paste_back_maps_the_crop_back_onto_its_region():
    original = Image.new("RGB", (100, 60), (0, 0, 0))
    region = (20, 10, 60, 50)  # 40x40, same ratio as the 64x64 processing size: no bands
    crop = Image.new("RGB", (64, 64), (200, 100, 50))
    full_mask = Image.new("L", (100, 60), 255)
    out = arr(paste_back(original, crop, region, full_mask))
    assert (out[10:50, 20:60] == (200, 100, 50)).all()
    assert (out[:10] == 0).all() and (out[:, :20] == 0).all() and (out[:, 60:] == 0).all()
