"""SD upscale: size, tiles, batches and seeds, infotext, interrupt, upscalers, script_args (fake engine),
and the demo model end to end."""

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from PIL import Image
from safetensors.torch import save_file

from pipelines.fields import RequestError, ResizeMode
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import JobControl, ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images.tiles import split_tiles
from pipelines.io.infotext import build_infotext, parse_infotext
from pipelines.io.outputs import read_infotext
from pipelines.models import upscalers
from pipelines.models.upscalers import UpscalerModels
from scripts.common import ScriptContext
from scripts.sd_upscale import SdUpscaleParams, parse_script_args, run, tile_seeds, upscaler_choices

LANCZOS = Image.Resampling.LANCZOS


class FakeEngine:
    """Records requests; returns each batch item's init image inverted (so processed tiles are visible)."""

    def __init__(self, outputs_root, interrupt_on_call=None, skip_on_call=None):
        self.outputs_root = outputs_root
        self.calls: list[Img2ImgRequest] = []
        self.interrupt_on_call, self.skip_on_call = interrupt_on_call, skip_on_call

    def img2img(self, request, on_progress=None, control=None):
        request.validate()
        self.calls.append(request)
        if on_progress:
            for step in (1, 2):
                on_progress(ProgressUpdate(job=0, job_count=1, step=step, steps=2, elapsed=0.0))
        if len(self.calls) == self.interrupt_on_call:
            control.interrupt()
            return GenerationResult(interrupted=True)
        if len(self.calls) == self.skip_on_call:
            return GenerationResult(skipped_batches=1)
        images, seeds, infotexts = [], [], []
        for j, source in enumerate(request.batch_images or (request.init_image,)):
            pixels = np.asarray(source.convert("RGB").resize((request.width, request.height)), dtype=np.uint8)
            images.append(Image.fromarray(255 - pixels))
            seeds.append(request.seed + j)
            infotexts.append(build_infotext(request.prompt, "", {"Seed": request.seed + j,
                                                                 "Size": f"{request.width}x{request.height}",
                                                                 **request.extra_generation_params}))
        return GenerationResult(images=images, seeds=seeds, infotexts=infotexts)


def noise_image(w, h, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8), "RGB")


def request(**kw):
    base = dict(init_image=noise_image(96, 80), prompt="a harbour", width=64, height=64, steps=4, seed=500,
                denoising_strength=0.3, save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


def tiles_sent(engine):
    return [image for call in engine.calls for image in call.batch_images]


def context(tmp_path):
    return ScriptContext(models_dir=tmp_path)


# 1. Geometry, batches, seeds ----------------------------------------------------------------------------
def test_output_is_scale_times_the_source_and_every_tile_is_processed(tmp_path):
    engine = FakeEngine(tmp_path)
    result = run(engine, request(), SdUpscaleParams(overlap=16, upscaler="Lanczos", scale=2.0),
                 context=context(tmp_path))
    assert [im.size for im in result.images] == [(192, 160)] and (result.width, result.height) == (192, 160)
    # 192 wide: ceil((192-16)/(64-16)) = 4 columns; 160 high: 3 rows.
    assert len(tiles_sent(engine)) == 12 and {t.size for t in tiles_sent(engine)} == {(64, 64)}
    assert all((c.width, c.height, c.resize_mode) == (64, 64, ResizeMode.JUST_RESIZE) for c in engine.calls)
    # Every tile came back inverted and was merged in: the whole image is the inverted upscale.
    upscaled = np.asarray(noise_image(96, 80).resize((192, 160), LANCZOS), dtype=int)
    assert np.abs(np.asarray(result.images[0], dtype=int) - (255 - upscaled)).max() <= 1


def test_fractional_scale_floors_to_a_multiple_of_8_as_a1111(tmp_path):
    result = run(FakeEngine(tmp_path), request(init_image=noise_image(70, 50)),
                 SdUpscaleParams(overlap=8, upscaler="Nearest", scale=1.5), context=context(tmp_path))
    assert result.images[0].size == (104, 72)  # 105 x 75 floored


def test_tiles_go_in_batches_with_a1111_seeds(tmp_path):
    engine = FakeEngine(tmp_path)
    result = run(engine, request(batch_size=4, n_iter=2), SdUpscaleParams(16, "Lanczos", 2.0),
                 context=context(tmp_path))
    assert [len(c.batch_images) for c in engine.calls] == [4, 4, 4] * 2
    assert all(c.batch_size == len(c.batch_images) and c.n_iter == 1 for c in engine.calls)
    # Batch k of upscale n starts at seed + n + k; item j adds j (the engine's seed + j).
    assert [c.seed for c in engine.calls] == [500, 501, 502, 501, 502, 503]
    assert result.seeds == [500, 501] and len(result.images) == 2
    assert tile_seeds(500, 12, 4) == [500, 501, 502, 503, 501, 502, 503, 504, 502, 503, 504, 505]


def test_a_short_last_batch(tmp_path):
    engine = FakeEngine(tmp_path)
    run(engine, request(batch_size=5), SdUpscaleParams(16, "Lanczos", 2.0), context=context(tmp_path))
    assert [len(c.batch_images) for c in engine.calls] == [5, 5, 2]


def test_an_image_smaller_than_a_tile_is_one_tile_processed_at_a_valid_size(tmp_path):
    engine = FakeEngine(tmp_path)
    result = run(engine, request(init_image=noise_image(30, 20), width=128, height=128),
                 SdUpscaleParams(8, "Lanczos", 2.0), context=context(tmp_path))
    assert (engine.calls[0].width, engine.calls[0].height) == (64, 64)  # 56x40 -> the engine's minimum, 64
    assert result.images[0].size == (56, 40)  # 60x40 floored to a multiple of 8


# 2. Infotext, progress, saving ------------------------------------------------------------------------------
def test_infotext_names_overlap_and_upscaler(tmp_path):
    result = run(FakeEngine(tmp_path), request(), SdUpscaleParams(32, "lanczos", 2.0),
                 context=context(tmp_path))
    info = parse_infotext(result.infotexts[0])
    assert (info["SD upscale overlap"], info["SD upscale upscaler"]) == ("32", "Lanczos")
    assert info["Seed"] == "500"
    assert (info["Size-1"], info["Size-2"]) == ("64", "64")  # the tile size, as in A1111


def test_progress_counts_batches_with_tile_text(tmp_path):
    updates = []
    run(FakeEngine(tmp_path), request(init_image=noise_image(64, 64)), SdUpscaleParams(16, "Lanczos", 2.0),
        on_progress=updates.append, context=context(tmp_path))
    assert {u.job_count for u in updates} == {9}
    assert [u.job for u in updates if u.step == 1] == list(range(9))
    assert [u.text for u in updates if u.step == 1][2] == "tile 3/9"
    updates.clear()
    run(FakeEngine(tmp_path), request(init_image=noise_image(64, 64), batch_size=4, n_iter=2),
        SdUpscaleParams(16, "Lanczos", 2.0), on_progress=updates.append, context=context(tmp_path))
    assert {u.job_count for u in updates} == {6}
    assert [u.text for u in updates if u.step == 1] == [
        f"{a}/9, upscale {n}/2" for n in (1, 2) for a in ("tiles 1-4", "tiles 5-8", "tile 9")]


def test_the_upscaled_image_is_saved_with_its_infotext(tmp_path):
    result = run(FakeEngine(tmp_path), request(save_images=True), SdUpscaleParams(16, "Lanczos", 2.0),
                 context=context(tmp_path))
    assert len(result.paths) == 1 and result.paths[0].parent.parent.name == "img2img-images"
    with Image.open(result.paths[0]) as saved:
        assert saved.size == (192, 160) and "SD upscale upscaler: Lanczos" in read_infotext(saved)


# 3. Interrupt and skip -------------------------------------------------------------------------------------
def test_interrupt_mid_way_returns_the_merge_with_unprocessed_tiles_plainly_upscaled(tmp_path):
    engine = FakeEngine(tmp_path, interrupt_on_call=3)
    result = run(engine, request(n_iter=2), SdUpscaleParams(16, "Lanczos", 2.0), control=JobControl(),
                 context=context(tmp_path))
    assert result.interrupted and len(engine.calls) == 3 and len(result.images) == 1
    out = np.asarray(result.images[0], dtype=int)
    upscaled = np.asarray(noise_image(96, 80).resize((192, 160), LANCZOS), dtype=int)
    assert np.abs(out[:40, :40] - (255 - upscaled[:40, :40])).max() <= 1  # tile 1: processed
    assert np.abs(out[120:, 150:] - upscaled[120:, 150:]).max() <= 1  # the last tile: never reached


def test_interrupt_before_any_tile_returns_nothing(tmp_path):
    control = JobControl()
    control.interrupt()
    engine = FakeEngine(tmp_path)
    result = run(engine, request(), SdUpscaleParams(16, "Lanczos", 2.0), control=control,
                 context=context(tmp_path))
    assert result.interrupted and result.images == [] and engine.calls == []


def test_a_skipped_batch_keeps_its_tiles_plainly_upscaled(tmp_path):
    engine = FakeEngine(tmp_path, skip_on_call=1)
    result = run(engine, request(), SdUpscaleParams(16, "Lanczos", 2.0), context=context(tmp_path))
    assert result.skipped_batches == 1 and not result.interrupted and len(result.images) == 1
    out = np.asarray(result.images[0], dtype=int)
    upscaled = np.asarray(noise_image(96, 80).resize((192, 160), LANCZOS), dtype=int)
    assert np.abs(out[:40, :40] - upscaled[:40, :40]).max() <= 1
    assert np.abs(out[120:, 150:] - (255 - upscaled[120:, 150:])).max() <= 1
    assert parse_infotext(result.infotexts[0])["Seed"] == "501"  # the first tile that was processed


# 4. Upscalers ------------------------------------------------------------------------------------------
def test_none_upscaler_tiles_the_source_as_it_is_whatever_the_scale(tmp_path):
    """A1111: with "None" the source is not rescaled (scale only matters to a real upscaler)."""
    engine = FakeEngine(tmp_path)
    result = run(engine, request(), SdUpscaleParams(16, "None", 2.0), context=context(tmp_path))
    assert result.images[0].size == (96, 80)
    expected = noise_image(96, 80).crop((0, 0, 64, 64))
    assert np.array_equal(np.asarray(tiles_sent(engine)[0]), np.asarray(expected))


def test_a_model_upscaler_from_models_dir(tmp_path):
    upscalers._import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN
    torch.manual_seed(0)
    (tmp_path / "ESRGAN").mkdir()
    weights = ESRGAN(num_filters=8, num_blocks=1, scale=4).state_dict()
    save_file(weights, tmp_path / "ESRGAN" / "4x-Tiny.safetensors")
    engine, models = FakeEngine(tmp_path), UpscalerModels()
    ctx = ScriptContext(models_dir=tmp_path, upscaler_models=models)
    params = parse_script_args(["", 16, 3, 2], ctx)  # index 3: the first model after None, Lanczos, Nearest
    assert params.upscaler == "4x-Tiny"
    result = run(engine, request(), params, context=ctx)
    expected = upscalers.upscale(noise_image(96, 80), "4x-Tiny", 2, tmp_path, models=models)
    assert expected.size == result.images[0].size == (192, 160) and models.loads == 1
    assert np.array_equal(np.asarray(tiles_sent(engine)[0]), np.asarray(expected.crop((0, 0, 64, 64))))
    assert parse_infotext(result.infotexts[0])["SD upscale upscaler"] == "4x-Tiny"


def test_upscaler_choices_are_the_index_order(tmp_path):
    assert upscaler_choices(tmp_path) == ["None", "Lanczos", "Nearest"]


# 5. script_args and validation ---------------------------------------------------------------------------
def test_script_args_in_a1111_order_with_defaults(tmp_path):
    assert parse_script_args([], context(tmp_path)) == SdUpscaleParams(64, "None", 2.0)
    assert parse_script_args(["", 32], context(tmp_path)) == SdUpscaleParams(32, "None", 2.0)
    assert parse_script_args([None, 0, "LANCZOS", 4], context(tmp_path)) == SdUpscaleParams(0, "Lanczos", 4.0)
    assert parse_script_args(["", 16, 2.0, 1.5], context(tmp_path)) == SdUpscaleParams(16, "Nearest", 1.5)


@pytest.mark.parametrize("args,needle", [
    (["", 300], "tile overlap 300 is outside 0..256"),
    (["", -1], "tile overlap -1 is outside 0..256"),
    (["", "64"], "tile overlap '64' is not an integer"),
    (["", 64, "Magic"], "upscaler unknown upscaler 'Magic'; known: None, Lanczos, Nearest"),
    (["", 64, 7], "upscaler index 7 is outside 0..2"),
    (["", 64, "None", 5], "scale factor 5 is outside 1.0..4.0"),
    (["", 64, "None", 0.5], "scale factor 0.5 is outside 1.0..4.0"),
    (["", 64, "None", "2"], "scale factor '2' is not a number"),
    (["", 64, "None", 2, "x"], "takes at most 4 values, got 5"),
])
def test_bad_script_args(tmp_path, args, needle):
    with pytest.raises(RequestError) as exc:
        parse_script_args(args, context(tmp_path))
    assert exc.value.field == "script_args" and needle in str(exc.value)


def test_overlap_must_be_smaller_than_the_tile(tmp_path):
    engine = FakeEngine(tmp_path)
    with pytest.raises(RequestError) as exc:
        run(engine, request(), SdUpscaleParams(64, "Lanczos", 2.0), context=context(tmp_path))
    assert "tile overlap 64 must be smaller than the tile size 64x64" in str(exc.value) and engine.calls == []


def test_the_callers_request_is_not_modified(tmp_path):
    req = request(resize_mode=2, batch_size=2)
    run(FakeEngine(tmp_path), req, SdUpscaleParams(16, "Lanczos", 2.0), context=context(tmp_path))
    assert req.resize_mode == 2 and req.batch_images == () and req.width == 64
    assert req.extra_generation_params == {}


def test_colour_correction_is_per_tile_against_its_own_source(tmp_path):
    engine = FakeEngine(tmp_path)
    result = run(engine, request(color_correction=True), SdUpscaleParams(16, "Lanczos", 2.0),
                 context=context(tmp_path))
    assert all(c.color_correction is False for c in engine.calls)
    assert parse_infotext(result.infotexts[0])["Color correction"] == "True"


# 6. The demo model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def test_demo_model_sd_upscale_is_deterministic_and_batches_match_single_tiles(engine, tmp_path):
    req = request(init_image=noise_image(64, 64), steps=4, denoising_strength=0.5, batch_size=2)
    params = SdUpscaleParams(16, "Lanczos", 2.0)
    a = run(engine, req, params, context=context(tmp_path))
    b = run(engine, req, params, context=context(tmp_path))
    assert a.images[0].size == (128, 128) and np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    # The same tiles one engine call each, with the seeds a batch gives them: the same picture.
    grid = split_tiles(noise_image(64, 64).resize((128, 128), LANCZOS), 64, 64, 16)
    for tile, seed in zip(grid.tiles(), tile_seeds(500, 9, 2)):
        single = req.replace(init_image=tile.image, batch_size=1, seed=seed,
                             subseed=a.subseed + (seed - 500) % 2)
        tile.image = engine.img2img(single).images[0]
    from pipelines.images.tiles import merge_tiles
    assert np.abs(np.asarray(merge_tiles(grid), dtype=int) - np.asarray(a.images[0], dtype=int)).max() <= 2


def test_demo_model_interrupt_mid_way(engine, tmp_path):
    control = JobControl()

    def on_progress(update):
        if update.job == 2:
            control.interrupt()
    result = run(engine, request(init_image=noise_image(64, 64), steps=4),
                 SdUpscaleParams(16, "Lanczos", 2.0), on_progress=on_progress, control=control,
                 context=context(tmp_path))
    assert result.interrupted and len(result.images) == 1 and result.images[0].size == (128, 128)


def test_transparent_pixels_are_flattened_onto_the_background_colour_option(tmp_path):
    """A1111 flattens the init picture onto img2img_background_color before upscaling, as img2img does."""
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (200, 40, 40, 255)  # left half opaque red, right half fully transparent
    engine = FakeEngine(tmp_path)
    run(engine, request(init_image=Image.fromarray(rgba, "RGBA"), background_color="#102030"),
        SdUpscaleParams(16, "None", 1.0), context=context(tmp_path))
    tile = np.asarray(tiles_sent(engine)[0])
    assert tuple(tile[10, 10]) == (200, 40, 40) and tuple(tile[10, 50]) == (0x10, 0x20, 0x30)
