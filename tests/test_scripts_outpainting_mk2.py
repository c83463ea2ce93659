"""Outpainting mk2: matched noise (pure), one-side canvases, the per-direction runs (fake engine),
script_args, and the demo model end to end."""

import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.fields import InpaintArea, MaskedContent, RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import JobControl
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import build_infotext
from scripts.outpainting_mk2 import (
    OutpaintingMk2Params,
    _Side,
    expand_canvas_mk2,
    matched_noise,
    parse_script_args,
    run,
)


class EchoEngine:
    """Returns each init image unchanged (at the request size); records requests."""

    def __init__(self, outputs_root, interrupt_on_call=None):
        self.outputs_root = outputs_root
        self.calls: list[Img2ImgRequest] = []
        self.interrupt_on_call = interrupt_on_call

    def img2img(self, request, on_progress=None, control=None):
        request.validate()
        self.calls.append(request)
        if len(self.calls) == self.interrupt_on_call:
            control.interrupt()
            return GenerationResult(interrupted=True)
        image = request.init_image.convert("RGB").resize((request.width, request.height))
        return GenerationResult(images=[image], seeds=[request.seed],
                                infotexts=[build_infotext(request.prompt, "", {"Seed": request.seed})])


def picture(w=96, h=80, seed=0):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([120 + 80 * np.sin(x / 9), 100 + 60 * np.cos(y / 7), 90 + 40 * np.sin((x + y) / 11)], -1)
    return Image.fromarray(np.clip(rgb + rng.rand(h, w, 3) * 20, 0, 255).astype(np.uint8), "RGB")


def request(**kw):
    base = dict(init_image=picture(), prompt="a coast", width=64, height=64, steps=4, seed=40,
                denoising_strength=0.8, save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


# 1. Matched noise -------------------------------------------------------------------------------------------
def test_matched_noise_keeps_the_picture_and_matches_its_colours_in_the_new_area():
    image = np.asarray(picture(64, 64), dtype=np.float64) / 255
    mask = np.zeros((64, 64))
    mask[:, 40:] = 1.0
    noise = matched_noise(image, mask)
    assert noise.shape == image.shape and noise.min() >= 0 and noise.max() <= 1
    assert np.array_equal(noise[:, :40], image[:, :40])
    new, reference = noise[:, 40:].reshape(-1, 3), image[:, :40].reshape(-1, 3)
    assert np.abs(new.mean(0) - reference.mean(0)).max() < 0.01  # histogram-matched per channel
    assert np.abs(np.percentile(new, 90, axis=0) - np.percentile(reference, 90, axis=0)).max() < 0.01
    assert new.std(0).min() > 0.02  # noise, not a flat fill
    assert np.array_equal(matched_noise(image, mask), noise)  # fixed generator: deterministic


def test_matched_noise_follows_the_fall_off_exponent():
    image = np.asarray(picture(64, 64), dtype=np.float64) / 255
    mask = np.zeros((64, 64))
    mask[:, 32:] = 1.0
    detailed, smooth = matched_noise(image, mask, noise_q=0.5), matched_noise(image, mask, noise_q=2.0)
    assert not np.array_equal(detailed, smooth)


def test_canvas_for_one_side():
    params = OutpaintingMk2Params(pixels=32, mask_blur=8)
    canvas, mask, grown = expand_canvas_mk2(picture(96, 80), _Side("left", 32), 8, params)
    assert grown == (128, 80) and canvas.size == mask.size == (128, 128)  # rounded up to 64
    m = np.asarray(mask)
    assert (m[:80, :40] == 255).all() and (m[:80, 40:] == 0).all() and (m[81:] == 255).all()
    assert np.array_equal(np.asarray(canvas)[:80, 40:128], np.asarray(picture(96, 80))[:, 8:])


# 2. The script (fake engine) --------------------------------------------------------------------------------
def test_each_direction_in_turn_grows_to_the_shared_margins(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run(engine, request(), OutpaintingMk2Params(pixels=32, mask_blur=2))
    assert [im.size for im in result.images] == [(192, 192)] and (result.width, result.height) == (192, 192)
    assert len(engine.calls) == 4 and [c.seed for c in engine.calls] == [40] * 4  # one seed per picture
    # Strips: 64 px deep next to the new edge (the request's width/height), full length along it.
    assert [(c.width, c.height) for c in engine.calls] == [(64, 128), (64, 128), (192, 64), (192, 64)]
    assert all(c.masked_content is MaskedContent.ORIGINAL and c.mask_blur_x == 8 for c in engine.calls)
    assert all(c.inpaint_area is InpaintArea.WHOLE_PICTURE for c in engine.calls)
    # The echo engine changes nothing: the original sits where the margins put it (48, 56), less the
    # mask-blur band (2 px) along each seam, which was noised for repainting.
    out, source = np.asarray(result.images[0]), np.asarray(picture())
    assert np.array_equal(out[58:134, 50:142], source[2:-2, 2:-2])


def test_one_direction(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run(engine, request(), OutpaintingMk2Params(pixels=64, directions=["down"]))
    assert result.images[0].size == (96, 192) and len(engine.calls) == 1  # 80 + 64 -> a multiple of 64
    assert (engine.calls[0].width, engine.calls[0].height) == (128, 64)  # 96 wide canvas rounded to 128


def test_batches_get_their_own_seeds_and_a_grid(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run(engine, request(batch_size=2, n_iter=2), OutpaintingMk2Params(32, directions=["left"]))
    assert [c.seed for c in engine.calls] == [40, 41, 42, 43]
    assert result.seeds == [40, 41, 42, 43, 40] and result.images[-1].size == (2 * 128, 2 * 80)


def test_interrupt_keeps_the_finished_pictures(tmp_path):
    engine = EchoEngine(tmp_path, interrupt_on_call=3)
    result = run(engine, request(batch_size=2), OutpaintingMk2Params(32, directions=["left", "right"]),
                 control=JobControl())
    assert result.interrupted and len(engine.calls) == 3 and result.seeds == [40]


def test_script_args_in_a1111_order_with_defaults():
    assert parse_script_args([]) == OutpaintingMk2Params(128, 8, ("left", "right", "up", "down"), 1.0, 0.05)
    params = parse_script_args(["", 64, 4, ["Right"], 0.5, 0.2])
    assert params == OutpaintingMk2Params(64, 4, ("right",), 0.5, 0.2)


@pytest.mark.parametrize("args,needle", [
    (["", 0], "pixels to expand 0 is outside 8..256"),
    (["", 64, 100], "mask blur 100 is outside 0..64"),
    (["", 64, 8, "up"], "directions must be a list"),
    (["", 64, 8, ["up"], 5], "fall-off exponent 5 is outside 0.0..4.0"),
    (["", 64, 8, ["up"], 1, 2], "color variation 2 is outside 0.0..1.0"),
    (["", 64, 8, ["up"], 1, 0.1, 0], "takes at most 6 values, got 7"),
])
def test_bad_script_args(args, needle):
    with pytest.raises(RequestError) as exc:
        parse_script_args(args)
    assert exc.value.field == "script_args" and needle in str(exc.value)


# 3. The demo model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def test_demo_model_outpaints_one_side_deterministically(engine):
    req = request(init_image=picture(64, 64), steps=3)
    params = OutpaintingMk2Params(pixels=64, mask_blur=2, directions=["right"])
    a, b = run(engine, req, params), run(engine, req, params)
    assert a.images[0].size == (128, 64) and np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    out, source = np.asarray(a.images[0], dtype=int), np.asarray(picture(64, 64), dtype=int)
    assert np.abs(out[:, :40] - source[:, :40]).max() <= 1  # outside the blurred mask: the original
    assert out[:, 80:].std() > 2  # the new side is painted
