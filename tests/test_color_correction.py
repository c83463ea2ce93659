"""Colour correction (A1111 "match original colours"): exact LAB, identity, colour shifts undone."""

import numpy as np
import pytest
from PIL import Image

from pipelines.images.color_correction import (
    apply_color_correction,
    color_reference,
    lab_to_srgb,
    srgb_to_lab,
)


def smooth_image(w=96, h=64, seed=0):
    """A smooth colourful picture with a little noise: many distinct colours, like a real image."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    rgb = np.stack([200 * x + 30, 150 * (1 - y) + 40, 120 * (x + y) / 2 + 60], axis=-1)
    rgb = rgb + rng.rand(h, w, 3) * 25
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def lab_means(img):
    return srgb_to_lab(np.asarray(img.convert("RGB"))).reshape(-1, 3).mean(axis=0)


def luma(img):
    return np.asarray(img.convert("RGB"), dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("rgb,lab", [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.2408, 80.0925, 67.2032)),  # the textbook sRGB red, D65
    ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ((128, 128, 128), (53.5850, 0.0, 0.0)),
])
def test_srgb_to_lab_known_values(rgb, lab):
    got = srgb_to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]
    assert np.allclose(got, lab, atol=2e-3)


def test_lab_round_trip_is_exact_for_every_8_bit_channel_value():
    values = np.arange(256, dtype=np.uint8)
    grid = np.meshgrid(values[::5], values[::3], values[::7], indexing="ij")
    rgb = np.stack(grid, axis=-1).reshape(1, -1, 3)
    back = np.rint(lab_to_srgb(srgb_to_lab(rgb)) * 255)
    assert np.array_equal(back, rgb)


@pytest.mark.parametrize("keep_luminosity", [True, False])
def test_matching_an_image_to_itself_is_the_identity(keep_luminosity):
    img = smooth_image()
    out = apply_color_correction(color_reference(img), img, keep_luminosity=keep_luminosity)
    assert out.size == img.size and out.mode == "RGB"
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).max() <= 1


def test_a_colour_cast_is_pulled_back_to_the_reference():
    img = smooth_image()
    cast = Image.fromarray(np.clip(np.asarray(img) * [0.7, 1.0, 1.3] + [0, 12, 0], 0, 255).astype(np.uint8))
    ref = color_reference(img)
    original, shifted = lab_means(img), lab_means(cast)
    assert np.abs(shifted[1:] - original[1:]).max() > 10  # the cast really moved the colours

    # Full matching: every LAB channel's distribution, so the mean colour comes back.
    full = apply_color_correction(ref, cast, keep_luminosity=False)
    assert np.abs(lab_means(full) - original).max() < 1.0
    rgb_means = [np.asarray(im, float).mean(axis=(0, 1)) for im in (full, img)]
    assert np.abs(rgb_means[0] - rgb_means[1]).max() < 2.0

    # A1111's default: hue and saturation come back, the output's own luminosity stays.
    kept = apply_color_correction(ref, cast)
    assert np.abs(lab_means(kept)[1:] - original[1:]).max() < 3.0
    assert np.abs(luma(kept) - luma(cast)).max() <= 1.5


def test_inputs_are_not_modified_and_other_modes_are_accepted():
    img = smooth_image().convert("RGBA")
    before = np.asarray(img).copy()
    ref = color_reference(img)
    out = apply_color_correction(ref, smooth_image(seed=1).convert("L"))
    assert np.array_equal(np.asarray(img), before)
    assert out.mode == "RGB" and out.size == img.size


def test_a_faded_output_gets_its_saturation_back_but_keeps_its_shading():
    img = smooth_image()
    faded = Image.blend(img, img.convert("L").convert("RGB"), 0.6)  # what an untrained model tends to do
    assert np.abs(lab_means(faded)[1:] - lab_means(img)[1:]).max() > 8
    out = apply_color_correction(color_reference(img), faded)
    assert np.abs(lab_means(out)[1:] - lab_means(img)[1:]).max() < 3.0
    assert np.abs(luma(out) - luma(faded)).max() <= 1.5
