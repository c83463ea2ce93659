"""Inpainting through the engine: masks, masked content, inpaint area, composite, 4- and 9-channel models."""

import numpy as np
import pytest
from demo_engine import make_demo_engine, make_nine_channel_engine
from pictures import blocky_picture, box_mask
from PIL import Image, ImageDraw

from pipelines.fields import InpaintArea, MaskedContent, MaskMode, RequestError
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def engine9(tmp_path_factory):
    return make_nine_channel_engine(tmp_path_factory.mktemp("data9"))


def picture(w=96, h=64):
    return blocky_picture(w, h)


def request(**kw):
    image = kw.pop("init_image", picture())
    base = dict(init_image=image, mask=box_mask(image.size, (32, 16, 63, 47)), prompt="a cat", width=image.width,
                height=image.height, steps=6, seed=7, save_images=False, mask_blur_x=0, mask_blur_y=0,
                denoising_strength=0.9)
    base.update(kw)
    return Img2ImgRequest(**base)


def arr(img):
    return np.asarray(img, dtype=np.int16)


def inside_outside(result, original, mask):
    m = np.asarray(mask) > 0
    diff = np.abs(arr(result) - arr(original)).max(axis=-1)
    return diff[m], diff[~m]


@pytest.mark.parametrize("content", list(MaskedContent))
def test_whole_picture_changes_inside_only_bit_exact_outside(engine, content):
    req = request(masked_content=content)
    out = engine.img2img(req).images[0]
    assert out.size == (96, 64)
    inside, outside = inside_outside(out, req.init_image, req.mask)
    assert outside.max() == 0 and inside.mean() > 5


def test_only_masked_keeps_size_and_pixels_outside(engine):
    big = picture(256, 192)
    mask = box_mask(big.size, (100, 80, 131, 111))
    req = request(init_image=big, mask=mask, width=64, height=64, inpaint_area=InpaintArea.ONLY_MASKED,
                  only_masked_padding=16)
    out = engine.img2img(req)
    assert out.images[0].size == (256, 192)
    inside, outside = inside_outside(out.images[0], big, mask)
    assert outside.max() == 0 and inside.mean() > 5
    info = parse_infotext(out.infotexts[0])
    assert info["Inpaint area"] == "Only masked" and info["Masked area padding"] == "16"


def test_inpaint_not_masked_redraws_the_rest(engine):
    req = request(mask_mode=MaskMode.INPAINT_NOT_MASKED)
    out = engine.img2img(req)
    inside, outside = inside_outside(out.images[0], req.init_image, req.mask)
    assert inside.max() == 0 and outside.mean() > 5
    assert parse_infotext(out.infotexts[0])["Mask mode"] == "Inpaint not masked"


def test_mask_from_alpha_uses_alpha_not_rgb(engine):
    rgba = Image.new("RGBA", (96, 64), (255, 255, 255, 0))
    ImageDraw.Draw(rgba).rectangle((32, 16, 63, 47), fill=(0, 0, 0, 255))  # opaque black strokes = inpaint
    via_alpha = engine.img2img(request(mask=rgba)).images[0]
    via_grey = engine.img2img(request()).images[0]
    assert np.array_equal(arr(via_alpha), arr(via_grey))


def test_mask_of_another_size_follows_the_image(engine):
    small = box_mask((48, 32), (16, 8, 31, 23))  # the same box at half size
    out = engine.img2img(request(mask=small)).images[0]
    _, outside = inside_outside(out, picture(), box_mask((96, 64), (32, 16, 63, 47)))
    assert outside.max() == 0


def test_blurred_edge_fades_out_with_no_seam_or_colour_shift_outside(engine):
    req = request(mask_blur_x=4, mask_blur_y=4)
    diff = np.abs(arr(engine.img2img(req).images[0]) - arr(req.init_image)).mean(axis=-1)
    # Walking right from the mask's edge (x = 63): the change fades monotonically (a ramp, not a step)
    # and is exactly zero once past the blur's reach (kernel radius 10 px).
    profile = diff[20:44, 60:80].mean(axis=0)
    ramp = profile[4:15]
    assert all(later <= earlier + 1.0 for earlier, later in zip(ramp, ramp[1:]))
    assert profile[15:].max() == 0
    far = np.ones((64, 96), bool)
    far[5:59, 21:75] = False
    assert diff[far].max() == 0


def test_masked_content_modes_start_differently(engine):
    outs = {c: arr(engine.img2img(request(masked_content=c, denoising_strength=0.5)).images[0]) for c in MaskedContent}
    assert not np.array_equal(outs[MaskedContent.LATENT_NOISE], outs[MaskedContent.LATENT_NOTHING])
    assert not np.array_equal(outs[MaskedContent.FILL], outs[MaskedContent.ORIGINAL])
    info = parse_infotext(engine.img2img(request(masked_content=MaskedContent.LATENT_NOISE)).infotexts[0])
    assert info["Masked content"] == "latent noise" and info["Mask blur"] == "0"


def test_latent_noise_is_seeded(engine):
    a = engine.img2img(request(masked_content=MaskedContent.LATENT_NOISE)).images[0]
    b = engine.img2img(request(masked_content=MaskedContent.LATENT_NOISE)).images[0]
    c = engine.img2img(request(masked_content=MaskedContent.LATENT_NOISE, seed=8)).images[0]
    assert np.array_equal(arr(a), arr(b)) and not np.array_equal(arr(a), arr(c))


@pytest.mark.parametrize("mask,mode,needle", [
    (Image.new("L", (96, 64), 0), MaskMode.INPAINT_MASKED, "mask is all black"),
    (Image.new("L", (96, 64), 255), MaskMode.INPAINT_NOT_MASKED, "inverted mask is all white"),
])
def test_nothing_to_inpaint_returns_the_picture_unchanged_with_a_notice(engine, mask, mode, needle):
    # A1111 composites the original back over every pixel: the init picture comes back, with a notice.
    out = engine.img2img(request(mask=mask, mask_mode=mode))
    assert np.array_equal(arr(out.images[0]), arr(picture()))
    assert any(needle in n and "unchanged" in n for n in out.notices)


def test_all_white_mask_redraws_everything_and_one_pixel_mask_works(engine):
    out = engine.img2img(request(mask=Image.new("L", (96, 64), 255))).images[0]
    assert np.abs(arr(out) - arr(picture())).mean() > 5
    dot = box_mask((96, 64), (40, 30, 40, 30))
    out = engine.img2img(request(mask=dot, inpaint_area=InpaintArea.ONLY_MASKED, width=64, height=64)).images[0]
    _, outside = inside_outside(out, picture(), dot)
    assert out.size == (96, 64) and outside.max() == 0


def test_mask_shrunk_to_nothing_returns_the_picture_unchanged(engine):
    out = engine.img2img(request(mask=box_mask((96, 64), (40, 30, 41, 31)), mask_grow=-2))
    assert np.array_equal(arr(out.images[0]), arr(picture()))
    assert any("after shrinking" in n for n in out.notices)


def test_mask_that_is_not_an_image_is_an_error(engine):
    with pytest.raises(RequestError) as exc:
        engine.img2img(request(mask=b"not an image"))
    assert exc.value.field == "mask"


def test_soft_inpainting_runs_keeps_outside_and_is_recorded(engine):
    req = request(mask_blur_x=8, mask_blur_y=8, soft_inpainting=True)
    out = engine.img2img(req)
    assert parse_infotext(out.infotexts[0])["Soft inpainting enabled"] == "True"  # A1111's key
    hard = engine.img2img(request(mask_blur_x=8, mask_blur_y=8)).images[0]
    assert not np.array_equal(arr(out.images[0]), arr(hard))


def test_nine_channel_model_inpaints_with_conditioning(engine9):
    assert engine9.models.current.components.is_inpainting
    req = request()
    out = engine9.img2img(req)
    inside, outside = inside_outside(out.images[0], req.init_image, req.mask)
    assert outside.max() == 0 and inside.mean() > 5
    again = engine9.img2img(req).images[0]
    assert np.array_equal(arr(out.images[0]), arr(again))


def test_nine_channel_model_also_does_plain_img2img(engine9):
    out = engine9.img2img(request(mask=None, width=64, height=64))
    assert out.images[0].size == (64, 64)


def test_inpaint_pipeline_shares_the_img2img_weights(engine9):
    models = engine9.models
    a, b = models.pipeline("img2img"), models.pipeline("inpaint")
    assert a.unet is b.unet and a.vae is b.vae and a.text_encoder is b.text_encoder
