"""Poor man's outpainting: canvas growth, which tiles are inpainted with which masks and seeds, script_args,
interrupt (fake engine), and the demo model end to end."""

import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.fields import InpaintArea, MaskedContent, RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import JobControl
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import build_infotext
from scripts.outpainting_poor_man import PoorManOutpaintingParams, margins, parse_script_args, run

RED = (255, 0, 0)


class PaintingEngine:
    """Paints the masked part of each tile red (mask > 127), leaves the rest; records requests."""

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
        pixels = np.array(request.init_image.convert("RGB"))
        pixels[np.asarray(request.mask) > 127] = RED
        return GenerationResult(images=[Image.fromarray(pixels)], seeds=[request.seed],
                                infotexts=[build_infotext(request.prompt, "", {"Seed": request.seed})])


def noise_image(w, h, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 200 + 20).astype(np.uint8), "RGB")


def request(**kw):
    base = dict(init_image=noise_image(96, 80), prompt="a meadow", width=64, height=64, steps=4, seed=900,
                denoising_strength=0.8, save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


def test_all_directions_grow_to_a_multiple_of_64_and_inpaint_the_tiles_touching_new_area(tmp_path):
    engine = PaintingEngine(tmp_path)
    params = PoorManOutpaintingParams(pixels=32, mask_blur=4)
    assert margins(96, 80, params) == (48, 48, 56, 56)
    result = run(engine, request(), params)
    assert [im.size for im in result.images] == [(192, 192)] and (result.width, result.height) == (192, 192)
    # 5 x 5 tiles of 64 overlapping by 32; the one wholly inside the original (64, 64) is skipped.
    assert len(engine.calls) == 24 and [c.seed for c in engine.calls] == list(range(900, 924))
    assert result.seeds == [900]
    out = np.asarray(result.images[0])
    assert (out[:48] == RED).all() and (out[-48:] == RED).all() and (out[:, :40] == RED).all()
    # The original, less the 2 x blur band repainted along the seam, is untouched.
    source = np.asarray(noise_image(96, 80))
    assert np.array_equal(out[56 + 8:136 - 8, 48 + 8:144 - 8], source[8:-8, 8:-8])


def test_tile_requests_inpaint_with_doubled_blur_and_the_chosen_content(tmp_path):
    engine = PaintingEngine(tmp_path)
    run(engine, request(inpaint_area=InpaintArea.ONLY_MASKED),
        PoorManOutpaintingParams(32, 6, "latent noise"))
    call = engine.calls[0]
    assert (call.mask_blur_x, call.mask_blur_y) == (12, 12)
    assert call.masked_content is MaskedContent.LATENT_NOISE
    assert call.inpaint_area is InpaintArea.WHOLE_PICTURE
    assert call.mask.size == call.init_image.size == (64, 64) and (call.width, call.height) == (64, 64)
    assert call.batch_size == 1 and call.n_iter == 1


def test_one_direction_grows_only_that_side(tmp_path):
    engine = PaintingEngine(tmp_path)
    result = run(engine, request(), PoorManOutpaintingParams(pixels=32, directions=("left",)))
    assert result.images[0].size == (128, 80)  # 96 + 32 -> 128, the height left alone
    out, source = np.asarray(result.images[0]), np.asarray(noise_image(96, 80))
    assert (out[:, :32] == RED).all() and np.array_equal(out[:, 40:], source[:, 8:])
    # Tiles start at x = 0, 32, 64 and y = 0, 16: only the two at x = 0 touch the new band.
    assert len(engine.calls) == 2
    for call in engine.calls:  # white over the band and 2 x blur (8 px) into the original, black after
        mask = np.asarray(call.mask)
        assert (mask[:, :40] == 255).all() and (mask[:, 40:] == 0).all()


def test_interrupt_returns_the_partial_canvas(tmp_path):
    engine = PaintingEngine(tmp_path, interrupt_on_call=3)
    result = run(engine, request(), PoorManOutpaintingParams(pixels=32), control=JobControl())
    assert result.interrupted and len(engine.calls) == 3 and len(result.images) == 1
    out = np.asarray(result.images[0])
    assert (out[:32, :32] == RED).all() and (out[-1, -1] == 0).all()  # the unreached corner is still black


def test_script_args_in_a1111_order_with_defaults():
    assert parse_script_args([]) == PoorManOutpaintingParams(128, 4, MaskedContent.FILL,
                                                             ("left", "right", "up", "down"))
    params = parse_script_args([64, 8, 1, ["Up", "left"]])
    assert params == PoorManOutpaintingParams(64, 8, MaskedContent.ORIGINAL, ("left", "up"))
    assert parse_script_args([64, 8, "latent nothing"]).masked_content is MaskedContent.LATENT_NOTHING


@pytest.mark.parametrize("args,needle", [
    ([4], "pixels to expand 4 is outside 8..256"),
    ([300], "pixels to expand 300 is outside 8..256"),
    ([64, 65], "mask blur 65 is outside 0..64"),
    ([64, 4, 7], "masked content 7 is outside 0..3"),
    ([64, 4, "smudge"], "masked content 'smudge' is not one of fill, original, latent noise, latent nothing"),
    ([64, 4, 0, "left"], "directions must be a list"),
    ([64, 4, 0, []], "choose at least one direction"),
    ([64, 4, 0, ["north"]], "direction 'north' is not one of left, right, up, down"),
    ([64, 4, 0, ["left"], 1], "takes at most 4 values, got 5"),
])
def test_bad_script_args(args, needle):
    with pytest.raises(RequestError) as exc:
        parse_script_args(args)
    assert exc.value.field == "script_args" and needle in str(exc.value)


def test_pixels_must_be_smaller_than_the_tile(tmp_path):
    engine = PaintingEngine(tmp_path)
    with pytest.raises(RequestError) as exc:
        run(engine, request(), PoorManOutpaintingParams(pixels=64))
    assert "pixels to expand 64 must be smaller than the tile size 64x64" in str(exc.value)
    assert engine.calls == []


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def test_demo_model_outpaints_and_keeps_the_original(engine):
    req = request(init_image=noise_image(64, 64), steps=3)
    params = PoorManOutpaintingParams(pixels=32, mask_blur=2, directions=("right",))
    a, b = run(engine, req, params), run(engine, req, params)
    assert a.images[0].size == (128, 64) and np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    out, source = np.asarray(a.images[0], dtype=int), np.asarray(noise_image(64, 64), dtype=int)
    assert np.abs(out[:, :48] - source[:, :48]).max() <= 1  # left of the seam band: the original's pixels
    assert out[:, 80:].std() > 0 and np.abs(out[:, 80:]).mean() > 5  # the new band was painted, not black


def test_outpainting_infotext_names_the_script_and_restores_in_the_ui():
    from pipelines.io.infotext import build_infotext, parse_infotext
    from scripts import outpainting_mk2, outpainting_poor_man
    from scripts.common import outpainting_params
    from scripts.script_values import script_from_infotext

    params = outpainting_mk2.OutpaintingMk2Params(pixels=64, mask_blur=6, directions=("left", "down"),
                                                  noise_q=1.5, color_variation=0.1)
    text = build_infotext("p", "", {"Steps": 20, **outpainting_params(outpainting_mk2.TITLE, params)})
    updates = script_from_infotext(parse_infotext(text))
    title = outpainting_mk2.TITLE
    assert updates.title == title and not updates.warnings
    assert updates.values == {(title, "pixels"): 64, (title, "mask_blur"): 6, (title, "noise_q"): 1.5,
                              (title, "color_variation"): 0.1, (title, "directions"): ["left", "down"]}
    poor = outpainting_poor_man.PoorManOutpaintingParams(pixels=32, directions=("right",))
    keys = outpainting_params(outpainting_poor_man.TITLE, poor)
    assert keys["Script"] == "Poor man's outpainting" and "Outpainting fall-off exponent" not in keys
