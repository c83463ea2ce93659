"""Loopback: strength curves, seeds, masked content, outputs and grid, interrupt, progress, colour correction.

Orchestration is checked exactly against a recording fake engine; the demo model checks the real path."""

import math

import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.fields import MaskedContent, RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import JobControl, ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images.color_correction import srgb_to_lab
from pipelines.io.infotext import build_infotext, parse_infotext
from scripts.loopback import (
    AppendInterrogation,
    DenoisingCurve,
    LoopbackParams,
    loop_strengths,
    parse_script_args,
    run,
)


class FakeEngine:
    """Records every request; returns the init image resized and brightened by 10, with a real infotext."""

    def __init__(self, outputs_root, interrupt_on_call=None, skip_on_call=None):
        self.outputs_root = outputs_root
        self.calls: list[Img2ImgRequest] = []
        self.interrupt_on_call = interrupt_on_call
        self.skip_on_call = skip_on_call

    def img2img(self, request, on_progress=None, control=None):
        request.validate()
        self.calls.append(request)
        call = len(self.calls)
        for step in (1, 2):
            if on_progress:
                on_progress(ProgressUpdate(job=0, job_count=1, step=step, steps=2, elapsed=0.0))
        if call == self.interrupt_on_call:
            control.interrupt()
            return GenerationResult(interrupted=True)
        if call == self.skip_on_call:
            return GenerationResult(skipped_batches=1)
        resized = request.init_image.convert("RGB").resize((request.width, request.height))
        pixels = np.asarray(resized, dtype=int)
        image = Image.fromarray(np.clip(pixels + 10, 0, 255).astype(np.uint8))
        params = {"Seed": request.seed, "Denoising strength": request.denoising_strength,
                  **request.extra_generation_params}
        return GenerationResult(images=[image], seeds=[request.seed], subseeds=[request.subseed],
                                infotexts=[build_infotext(request.prompt, "", params)])


def source(w=64, h=64, color=(40, 90, 160)):
    return Image.new("RGB", (w, h), color)


def request(**kw):
    base = dict(init_image=source(), prompt="a castle", width=64, height=64, steps=4, seed=100,
                denoising_strength=0.75, save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


# 1. Pure parts -------------------------------------------------------------------------------------------
def test_linear_curve_values():
    assert loop_strengths(0.75, 0.5, 4, DenoisingCurve.LINEAR) == pytest.approx([0.75, 0.75 - 0.25 / 3,
                                                                                 0.75 - 0.5 / 3, 0.5])


def test_aggressive_and_lazy_curve_values():
    t = [0, 1 / 3, 2 / 3, 1]
    aggressive = loop_strengths(0.2, 0.8, 4, DenoisingCurve.AGGRESSIVE)
    lazy = loop_strengths(0.2, 0.8, 4, "Lazy")
    assert aggressive == pytest.approx([0.2 + 0.6 * math.sin(x * math.pi / 2) for x in t])
    assert lazy == pytest.approx([0.2 + 0.6 * (1 - math.cos(x * math.pi / 2)) for x in t])
    assert aggressive[1] == pytest.approx(0.5)
    assert lazy[1] == pytest.approx(0.2 + 0.6 * (1 - math.sqrt(3) / 2))
    assert aggressive[0] == lazy[0] == 0.2 and aggressive[-1] == pytest.approx(0.8)


def test_one_loop_keeps_the_initial_strength():
    assert loop_strengths(0.6, 0.1, 1, DenoisingCurve.LAZY) == [0.6]


def test_script_args_in_a1111_order_with_defaults():
    assert parse_script_args([]) == LoopbackParams()
    assert parse_script_args(None) == LoopbackParams(loops=4, final_denoising_strength=0.5)
    params = parse_script_args([8, 0.25, "aggressive", "clip"])
    assert params == LoopbackParams(8, 0.25, DenoisingCurve.AGGRESSIVE, AppendInterrogation.CLIP)
    assert parse_script_args([6.0]).loops == 6  # JSON sliders send floats


def test_unknown_curve_is_linear_with_a_notice():
    # A1111's loopback takes any curve but Aggressive and Lazy as Linear: so do we, and say so.
    params = parse_script_args([4, 0.5, "Wavy"])
    assert params.denoising_curve is DenoisingCurve.LINEAR
    assert params.notices == ("Loopback: denoising curve 'Wavy' is not one of Aggressive, Linear, Lazy; "
                              "Linear was used",)
    assert parse_script_args([4, 0.5, 3]).denoising_curve is DenoisingCurve.LINEAR


@pytest.mark.parametrize("args,needle", [
    ([0], "loops 0 is outside 1..32"),
    ([33], "loops 33 is outside 1..32"),
    (["4"], "loops '4' is not an integer"),
    ([4, 1.5], "final denoising strength 1.5 is outside 0.0..1.0"),
    ([4, 0.5, "Linear", "BLIP"], "append interrogated prompt 'BLIP' is not one of None, CLIP, DeepBooru"),
    ([4, 0.5, "Linear", "None", "extra"], "takes at most 4 values, got 5"),
    ("4", "expected a list"),
])
def test_bad_script_args(args, needle):
    with pytest.raises(RequestError) as exc:
        parse_script_args(args)
    assert exc.value.field == "script_args" and needle in str(exc.value)


def test_params_built_directly_are_validated_too():
    assert LoopbackParams(denoising_curve="lazy").denoising_curve is DenoisingCurve.LAZY
    with pytest.raises(RequestError):
        LoopbackParams(loops=0)


# 2. Orchestration (fake engine) --------------------------------------------------------------------------
def test_each_loop_feeds_the_last_output_back_with_seed_plus_one(tmp_path):
    engine = FakeEngine(tmp_path)
    req = request()
    result = run(engine, req, LoopbackParams(loops=4, color_correction=False))
    assert [c.seed for c in engine.calls] == [100, 101, 102, 103]
    expected = loop_strengths(0.75, 0.5, 4, "Linear")
    assert [c.denoising_strength for c in engine.calls] == pytest.approx(expected)
    assert all(c.batch_size == 1 and c.n_iter == 1 for c in engine.calls)
    assert engine.calls[0].init_image is req.init_image
    for previous, output in zip(engine.calls[1:], result.images[1:]):
        assert previous.init_image is output  # the output of loop i is the init image of loop i + 1
    assert np.asarray(result.images[4])[0, 0].tolist() == [80, 130, 200]  # brightened 4 times by the fake
    assert result.seeds == [100, 100, 101, 102, 103]  # the grid first, as A1111 returns it
    assert result.seed == 100 and not result.interrupted


def test_a_one_row_grid_first_then_every_loop_image(tmp_path):
    result = run(FakeEngine(tmp_path), request(), LoopbackParams(loops=3, color_correction=False))
    assert len(result.images) == len(result.seeds) == len(result.infotexts) == 4
    grid = result.images[0]
    assert grid.size == (3 * 64, 64)
    for i, image in enumerate(result.images[1:]):
        assert np.array_equal(np.asarray(grid.crop((64 * i, 0, 64 * (i + 1), 64))), np.asarray(image))


def test_one_loop_gives_no_grid(tmp_path):
    result = run(FakeEngine(tmp_path), request(), LoopbackParams(loops=1))
    assert len(result.images) == 1


def test_masked_content_becomes_original_after_the_first_loop(tmp_path):
    engine = FakeEngine(tmp_path)
    req = request(mask=Image.new("L", (64, 64), 255), masked_content=MaskedContent.LATENT_NOISE)
    run(engine, req, LoopbackParams(loops=3))
    assert [c.masked_content for c in engine.calls] == [MaskedContent.LATENT_NOISE, MaskedContent.ORIGINAL,
                                                         MaskedContent.ORIGINAL]
    assert all(c.mask is req.mask for c in engine.calls)
    assert req.masked_content is MaskedContent.LATENT_NOISE  # the caller's request is untouched


def test_batch_count_restarts_from_the_original_and_returns_each_batchs_last_image(tmp_path):
    engine = FakeEngine(tmp_path)
    req = request(n_iter=2, denoising_strength=0.6)
    result = run(engine, req, LoopbackParams(loops=3, final_denoising_strength=0.2, color_correction=False))
    assert [c.seed for c in engine.calls] == [100, 101, 102, 103, 104, 105]  # seeds keep counting
    assert engine.calls[3].init_image is req.init_image and engine.calls[3].denoising_strength == 0.6
    assert [c.denoising_strength for c in engine.calls[3:]] == pytest.approx([0.6, 0.4, 0.2])
    assert result.seeds == [102, 102, 105]  # A1111: the grid of each batch's last image, then those images
    assert result.images[0].size == (128, 64)


def test_infotext_has_the_script_keys_and_each_loops_strength(tmp_path):
    result = run(FakeEngine(tmp_path), request(), LoopbackParams(loops=2, final_denoising_strength=0.3,
                                                                 denoising_curve="Lazy"))
    first, second = (parse_infotext(t) for t in result.infotexts[1:3])
    assert first["Final denoising strength"] == "0.3" and first["Denoising curve"] == "Lazy"
    assert (first["Denoising strength"], second["Denoising strength"]) == ("0.75", "0.3")


def test_interrupt_between_loops_returns_what_is_done(tmp_path):
    engine = FakeEngine(tmp_path)
    control = JobControl()

    def on_progress(update):
        if update.job == 2 and update.step == 0:  # loop 3 is about to start
            control.interrupt()
    result = run(engine, request(), LoopbackParams(loops=5), on_progress=on_progress, control=control)
    assert result.interrupted and len(engine.calls) == 2
    assert result.seeds == [100, 100, 101]  # the grid of the two loop images, then them


def test_interrupt_inside_a_loop_keeps_the_finished_loops(tmp_path):
    engine = FakeEngine(tmp_path, interrupt_on_call=3)
    result = run(engine, request(), LoopbackParams(loops=5), control=JobControl())
    assert result.interrupted and result.seeds == [100, 100, 101] and len(engine.calls) == 3


def test_skip_abandons_the_rest_of_the_batch(tmp_path):
    engine = FakeEngine(tmp_path, skip_on_call=2)
    result = run(engine, request(n_iter=2), LoopbackParams(loops=3))
    assert [c.seed for c in engine.calls] == [100, 101, 102, 103, 104]
    assert result.skipped_batches == 1 and result.seeds == [104]  # only batch 2 finished: no grid of one


def test_progress_counts_the_whole_job(tmp_path):
    updates = []
    run(FakeEngine(tmp_path), request(n_iter=2), LoopbackParams(loops=3), on_progress=updates.append)
    assert {u.job_count for u in updates} == {6}
    assert [u.job for u in updates if u.step == 0] == [0, 1, 2, 3, 4, 5]
    assert [u.job for u in updates if u.step == 2] == [0, 1, 2, 3, 4, 5]
    assert updates[4].text == "Iteration 2/3, batch 1/2"
    assert updates[-1].fraction == 1.0


def test_interrogated_caption_is_appended_each_loop(tmp_path):
    engine = FakeEngine(tmp_path)
    seen = []

    def interrogate(image):
        seen.append(image)
        return f"caption {len(seen)}"
    from scripts.common import ScriptContext
    run(engine, request(), LoopbackParams(loops=2, append_interrogation="CLIP"),
        context=ScriptContext(interrogate=interrogate))
    assert [c.prompt for c in engine.calls] == ["a castle, caption 1", "a castle, caption 2"]
    run(engine, request(prompt=""), LoopbackParams(loops=1, append_interrogation="CLIP"),
        context=ScriptContext(interrogate=interrogate))
    assert engine.calls[-1].prompt == "caption 3"


def test_clip_without_an_interrogator_is_an_error_before_any_work(tmp_path):
    engine = FakeEngine(tmp_path)
    with pytest.raises(RequestError) as exc:
        run(engine, request(), LoopbackParams(append_interrogation="CLIP"))
    assert exc.value.field == "script_args" and "interrogator, which is not available" in str(exc.value)
    assert engine.calls == []


def test_a_bad_request_is_rejected_before_any_work(tmp_path):
    engine = FakeEngine(tmp_path)
    with pytest.raises(RequestError) as exc:
        run(engine, request(steps=0), LoopbackParams())
    assert exc.value.field == "steps" and engine.calls == []


def test_colour_correction_is_off_by_default_as_a1111(tmp_path):
    engine = FakeEngine(tmp_path)
    run(engine, request(), LoopbackParams(loops=2))
    assert all(not c.color_correction and c.color_reference_image is None for c in engine.calls)


def test_colour_correction_matches_the_original_not_the_previous_loop(tmp_path):
    """The engine corrects (before its inpaint composite), always against the ORIGINAL picture."""
    engine = FakeEngine(tmp_path)
    original = Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 120 + 40).astype(np.uint8))
    result = run(engine, request(init_image=original), LoopbackParams(loops=4, color_correction=True))
    assert all(c.color_correction and c.color_reference_image is original for c in engine.calls)
    assert engine.calls[1].init_image is result.images[1]  # ...while each loop starts from the last output


def test_saved_loop_images_and_grid(tmp_path):
    result = run(FakeEngine(tmp_path), request(save_images=True), LoopbackParams(loops=2))
    assert len(result.paths) == 3
    kinds = [p.parent.parent.name for p in result.paths]
    assert kinds == ["img2img-grids", "img2img-images", "img2img-images"]
    assert all(p.exists() for p in result.paths)


# 3. The demo model ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def colourful(w=64, h=64):
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([180 + 40 * np.sin(x / 7), 60 + 30 * np.cos(y / 5), 40 + 20 * np.sin((x + y) / 9)],
                   axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def test_demo_model_loopback_is_deterministic_with_seeds_per_loop(engine):
    req = request(init_image=colourful(), steps=3, save_images=False)
    a = run(engine, req, LoopbackParams(loops=3))
    b = run(engine, req, LoopbackParams(loops=3))
    assert a.seeds == [100, 100, 101, 102]
    assert [parse_infotext(t)["Seed"] for t in a.infotexts[1:]] == ["100", "101", "102"]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))
    assert [im.size for im in a.images] == [(192, 64)] + [(64, 64)] * 3


def test_demo_model_colour_correction_holds_the_colours_over_8_loops(engine):
    """The untrained demo model washes colours out; with correction the 8th loop keeps the original's."""
    original = colourful()
    target = srgb_to_lab(np.asarray(original)).reshape(-1, 3).mean(0)
    req = request(init_image=original, steps=2)

    def chroma_error(params):
        last = run(engine, req, params).images[-1]
        return np.abs(srgb_to_lab(np.asarray(last)).reshape(-1, 3).mean(0)[1:] - target[1:]).sum()
    assert chroma_error(LoopbackParams(loops=8, color_correction=True)) < 10
    assert chroma_error(LoopbackParams(loops=2)) > 30  # washed out from loop 1 on


def test_demo_model_colour_correction_leaves_the_unmasked_pixels_alone(engine):
    """A1111 corrects colours before the inpaint composite: outside the mask every loop keeps the original's
    pixels exactly, however far the masked part drifts."""
    original = colourful()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    req = request(init_image=original, mask=mask, mask_blur_x=0, mask_blur_y=0, steps=3)
    result = run(engine, req, LoopbackParams(loops=3, color_correction=True))
    outside = np.asarray(mask) == 0
    for image in result.images[1:]:
        assert (np.asarray(image)[outside] == np.asarray(original)[outside]).all()
