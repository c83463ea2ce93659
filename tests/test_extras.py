"""Extras (pipelines/generation/extras.py): A1111's postprocessing upscale sizes, the upscaler 2 blend, the
PNG text it saves, folder batches with unreadable files, the output limit, one job in the queue."""

import threading

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from pipelines.fields import RequestError
from pipelines.generation.extras import (
    ExtrasRequest,
    ExtrasResizeMode,
    ExtrasSource,
    folder_sources,
    limit_size_by_one_dimension,
    plan_upscale,
    postprocessing_text,
    run_extras,
)
from pipelines.generation.progress import JobControl
from pipelines.limits import Limits
from tests.demo_engine import make_demo_engine
from tests.test_upscalers import tiny_esrgan

SCALE_TO = ExtrasResizeMode.SCALE_TO


def noise(w=100, h=75, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8), "RGB")


def with_parameters(image, text):
    """The picture as a PNG file would give it back: `parameters` in its info."""
    image = image.copy()
    image.info["parameters"] = text
    return image


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data = tmp_path_factory.mktemp("extras")
    (data / "models" / "ESRGAN").mkdir(parents=True)
    save_file(tiny_esrgan(4).state_dict(), data / "models" / "ESRGAN" / "4x-Tiny.safetensors")
    return make_demo_engine(data)


# 1. Sizes --------------------------------------------------------------------------------------------------
def test_scale_by_floors_to_a_multiple_of_8_as_a1111(engine):
    result = run_extras(engine, ExtrasRequest(upscaling_resize=2, upscaler_1="Lanczos"),
                        [ExtrasSource(noise(100, 75))], save=False)
    assert result.images[0].size == (200, 144)  # 150 -> 144
    assert result.infotexts == ["Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"]
    expected = noise(100, 75).resize((200, 150), Image.Resampling.LANCZOS).resize((200, 144),
                                                                                  Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))


def test_scale_to_with_crop_centres_the_upscale_on_the_target(engine):
    source = noise(100, 75)
    cropped = run_extras(engine, ExtrasRequest(SCALE_TO, upscaling_resize_w=512, upscaling_resize_h=300,
                                               upscaling_crop=True, upscaler_1="Nearest"),
                         [ExtrasSource(source)], save=False)
    whole = run_extras(engine, ExtrasRequest(SCALE_TO, upscaling_resize_w=512, upscaling_resize_h=300,
                                             upscaling_crop=False, upscaler_1="Nearest"),
                       [ExtrasSource(source)], save=False)
    # factor max(512/100, 300/75) = 5.12 -> 512x384; the crop keeps the middle 300 rows
    assert whole.images[0].size == (512, 384) and cropped.images[0].size == (512, 300)
    assert np.array_equal(np.asarray(cropped.images[0]), np.asarray(whole.images[0])[42:342])
    assert cropped.infotexts[0] == ("Postprocess upscale to: 512x300, Postprocess crop to: 512x300, "
                                    "Postprocess upscaler: Nearest")
    assert whole.infotexts[0] == "Postprocess upscale to: 512x300, Postprocess upscaler: Nearest"


def test_scale_to_a_wider_target_pads_with_black_as_a1111():
    plan = plan_upscale((100, 100), ExtrasRequest(SCALE_TO, upscaling_resize_w=400, upscaling_resize_h=200))
    assert plan.scale == 4 and plan.crop == (400, 200)


def test_max_side_length_limits_the_longer_side():
    assert limit_size_by_one_dimension(400, 300, 256) == (256, 192)
    assert limit_size_by_one_dimension(300, 400, 256) == (192, 256)
    plan = plan_upscale((100, 75), ExtrasRequest(upscaling_resize=4, max_side_length=256))
    assert plan.scale == pytest.approx(2.56) and plan.crop is None
    assert plan.info == {"Postprocess upscale by": 4.0, "Max side length": 256}


def test_upscaler_1_none_returns_the_picture_untouched_without_text(engine):
    source = noise(40, 30)
    result = run_extras(engine, ExtrasRequest(upscaling_resize=4, upscaler_1="None"), [ExtrasSource(source)],
                        save=False)
    assert result.images[0].size == (40, 30) and result.infotexts == [""]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(source))


# 2. Upscaler 2 --------------------------------------------------------------------------------------------
def test_upscaler_2_is_blended_at_its_visibility(engine):
    source = noise(40, 32)
    blend = run_extras(engine, ExtrasRequest(upscaling_resize=2, upscaler_1="Nearest", upscaler_2="Lanczos",
                                             upscaler_2_visibility=0.25), [ExtrasSource(source)], save=False)
    nearest = source.resize((80, 64), Image.Resampling.NEAREST)
    lanczos = source.resize((80, 64), Image.Resampling.LANCZOS)
    got = np.asarray(blend.images[0]).astype(int)
    want = np.asarray(nearest).astype(float) * 0.75 + np.asarray(lanczos).astype(float) * 0.25
    assert np.abs(got - want).max() <= 1  # Image.blend rounds
    assert not np.array_equal(got, np.asarray(nearest))
    assert blend.infotexts[0].endswith("Postprocess upscaler: Nearest, Postprocess upscaler 2: Lanczos")


def test_upscaler_2_at_visibility_0_is_not_used(engine):
    result = run_extras(engine, ExtrasRequest(upscaler_1="Nearest", upscaler_2="Lanczos"),
                        [ExtrasSource(noise(40, 32))], save=False)
    assert "upscaler 2" not in result.infotexts[0]
    assert np.array_equal(np.asarray(result.images[0]),
                          np.asarray(noise(40, 32).resize((80, 64), Image.Resampling.NEAREST)))


def test_a_model_upscaler_from_models_esrgan(engine):
    result = run_extras(engine, ExtrasRequest(upscaling_resize=2, upscaler_1="4x-Tiny"),
                        [ExtrasSource(noise(24, 16))], save=False)
    assert result.images[0].size == (48, 32)  # one 4x pass, then down to the target (A1111)
    assert result.infotexts[0] == "Postprocess upscale by: 2.0, Postprocess upscaler: 4x-Tiny"
    assert engine.models.upscalers.loads >= 1


# 3. Saving ------------------------------------------------------------------------------------------------
def test_saved_png_keeps_the_source_parameters_and_adds_postprocessing(engine):
    folder = engine.outputs_root / "extras-images"
    source = with_parameters(noise(40, 32), "a cat\nSteps: 20, Seed: 7")
    result = run_extras(engine, ExtrasRequest(upscaler_1="Lanczos"), [ExtrasSource(source)])
    path = result.paths[0]
    assert path.parent == folder  # no date folder for extras (A1111)
    assert path.name.endswith(".png") and path.stem.isdigit() and len(path.stem) == 5
    with Image.open(path) as saved:
        saved.load()
        assert saved.size == (80, 64)
        assert saved.info["parameters"] == "a cat\nSteps: 20, Seed: 7"
        assert saved.info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"
        assert saved.info["extras"] == saved.info["postprocessing"]


def test_batch_files_keep_their_names_and_never_replace_a_file(engine, tmp_path):
    sources = [ExtrasSource(noise(16, 16, 1), name="cat.jpg"), ExtrasSource(noise(16, 16, 2), name="cat.jpg")]
    result = run_extras(engine, ExtrasRequest(upscaler_1="Nearest"), sources, outdir=tmp_path)
    first, second = result.paths
    assert first.name == "cat.png" and second.name.endswith("-cat.png") and second.exists()


def test_folder_batch_reports_an_unreadable_file_and_goes_on(engine, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    noise(16, 16, 1).save(src / "img10.png")
    noise(16, 16, 2).save(src / "img2.png")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    (src / ".hidden.png").write_bytes(b"")
    sources = folder_sources(src)
    assert [s.name for s in sources] == ["broken.png", "img2.png", "img10.png"]
    result = run_extras(engine, ExtrasRequest(upscaler_1="Nearest"), sources, outdir=out)
    assert sorted(p.name for p in out.iterdir()) == ["img10.png", "img2.png"]
    assert [i.size for i in result.images] == [(32, 32), (32, 32)]
    assert any("broken.png" in n and "not a readable image" in n for n in result.notices)


# 4. Refusals, the queue ----------------------------------------------------------------------------------
def test_output_beyond_the_pixel_limit_is_refused_before_any_work(engine):
    engine_limits, engine.limits = engine.limits, Limits(max_output_pixels=100 * 100)
    try:
        with pytest.raises(RequestError) as err:
            run_extras(engine, ExtrasRequest(upscaling_resize=4, upscaler_1="Lanczos"),
                       [ExtrasSource(noise(40, 40), label="image")], save=False)
        assert err.value.field == "upscaling_resize" and "--max-output-pixels" in str(err.value)
        with pytest.raises(RequestError) as err:
            run_extras(engine, ExtrasRequest(SCALE_TO, upscaling_resize_w=4000, upscaling_resize_h=64,
                                             upscaler_1="Lanczos"), [ExtrasSource(noise(40, 40))], save=False)
        assert err.value.field == "upscaling_resize_w"
    finally:
        engine.limits = engine_limits


@pytest.mark.parametrize("changes,field", [
    ({"upscaler_1": "Nope"}, "upscaler_1"), ({"upscaler_2": "Nope"}, "upscaler_2"),
    ({"upscaling_resize": 0}, "upscaling_resize"), ({"upscaling_resize": 17}, "upscaling_resize"),
    ({"upscaler_2_visibility": 1.5}, "upscaler_2_visibility"), ({"upscaling_resize_w": 0}, "upscaling_resize_w"),
])
def test_bad_requests_name_their_field(engine, changes, field):
    with pytest.raises(RequestError) as err:
        run_extras(engine, ExtrasRequest(**{"upscaler_1": "Lanczos", **changes}), [ExtrasSource(noise())],
                   save=False)
    assert err.value.field == field


def test_a_run_is_one_job_in_the_engine_queue_and_interrupt_stops_it(engine):
    seen = []
    with engine.exclusive() as blocker:  # the queue is busy: the extras job must wait for it
        thread = threading.Thread(target=lambda: seen.append(run_extras(
            engine, ExtrasRequest(upscaler_1="Nearest"), [ExtrasSource(noise(16, 16))], save=False)))
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and not seen and blocker is engine.queue.running
        assert [j.kind for j in engine.queue.waiting] == ["extras"]
    thread.join(10)
    assert len(seen[0].images) == 1
    control = JobControl()
    control.interrupt()
    stopped = run_extras(engine, ExtrasRequest(upscaler_1="Nearest"), [ExtrasSource(noise(16, 16))] * 3,
                         save=False, control=control)
    assert stopped.interrupted and stopped.images == []


def test_postprocessing_text_quotes_like_a1111():
    assert postprocessing_text({"Postprocess upscaler": "a, b", "x": "x"}) == 'Postprocess upscaler: "a, b", x'


def test_png_text_chunks_reach_the_file_unchanged(tmp_path):
    from pipelines.io.outputs import save_image

    path = save_image(noise(8, 8), "ignored for png", tmp_path, None, text_chunks={"a": "1", "parameters": "p"})
    with Image.open(path) as saved:
        saved.load()
        assert path.name == "00000.png" and saved.info == {**saved.info, "a": "1", "parameters": "p"}
