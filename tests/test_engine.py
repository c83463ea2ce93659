"""The img2img engine on the tiny demo model: shapes, determinism, seeds, validation, cancel, infotext."""

import gc
import threading
import weakref

import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.device_policy import DevicePolicy
from pipelines.fields import RequestError, ResizeMode
from pipelines.generation.progress import JobControl
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.model_manager import ModelManager


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=2)


def source_image(w=96, h=80):
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(h, w, 3) * 255).astype("uint8"), "RGB")


def request(**kw):
    base = dict(init_image=source_image(), prompt="a red barn", width=64, height=64, steps=6, seed=1234,
                save_images=False, return_grid=False)  # the images themselves (grids: tests/test_grids.py)
    base.update(kw)
    return Img2ImgRequest(**base)


def pixels(img):
    return np.asarray(img, dtype=np.int16)


def test_output_size_count_and_seeds(engine):
    result = engine.img2img(request(width=96, height=64, batch_size=2, n_iter=2))
    assert [im.size for im in result.images] == [(96, 64)] * 4
    assert result.seeds == [1234, 1235, 1236, 1237]
    assert [parse_infotext(t)["Seed"] for t in result.infotexts] == ["1234", "1235", "1236", "1237"]


def test_same_seed_same_pixels_and_different_seed_differs(engine):
    a, b = engine.img2img(request()), engine.img2img(request())
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    c = engine.img2img(request(seed=999))
    assert not np.array_equal(pixels(a.images[0]), pixels(c.images[0]))


def test_image_i_of_a_batch_equals_a_single_run_with_seed_plus_i(engine):
    batch = engine.img2img(request(batch_size=3))
    single = engine.img2img(request(seed=1236))
    assert np.abs(pixels(batch.images[2]) - pixels(single.images[0])).max() <= 1


def test_random_seed_is_resolved_and_recorded(engine):
    result = engine.img2img(request(seed=-1))
    assert result.seed >= 0 and result.seeds == [result.seed]
    assert f"Seed: {result.seed}," in result.infotexts[0]


def test_variation_seed_changes_pixels_and_is_recorded(engine):
    plain = engine.img2img(request())
    varied = engine.img2img(request(subseed=77, subseed_strength=0.5))
    assert not np.array_equal(pixels(plain.images[0]), pixels(varied.images[0]))
    info = parse_infotext(varied.infotexts[0])
    assert (info["Variation seed"], info["Variation seed strength"]) == ("77", "0.5")


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M Karras", "DDIM", "Heun", "DPM++ SDE", "LMS", "UniPC"])
def test_samplers_run_deterministically(engine, sampler):
    a = engine.img2img(request(sampler_name=sampler, steps=4))
    b = engine.img2img(request(sampler_name=sampler, steps=4))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert f"Sampler: {sampler.replace(' Karras', '')}," in a.infotexts[0]


@pytest.mark.parametrize("field,value,needle", [
    ("width", 100, "width: 100 is not a multiple of 8 in 64..2048"),
    ("height", 4096, "height: 4096"),
    ("denoising_strength", 1.5, "denoising_strength: 1.5 is outside 0.0..1.0"),
    ("steps", 0, "steps: 0 is outside 1..150"),
    ("cfg_scale", 31, "cfg_scale: 31 is outside 1.0..30.0"),
    ("batch_size", 9, "batch_size: 9 is outside 1..8"),
    ("n_iter", 0, "n_iter: 0 must be at least 1"),
    ("sampler_name", "Euler z", "unknown sampler 'Euler z'"),
    ("scheduler", "Wobbly", "unknown schedule type 'Wobbly'"),
    ("init_image", None, "init_image: no init image"),
    ("resize_mode", 7, "resize_mode: 7 is not one of 0, 1, 2, 3"),
])
def test_validation_names_field_value_and_range(engine, field, value, needle):
    with pytest.raises(RequestError) as exc:
        engine.img2img(request(**{field: value}))
    assert exc.value.field == field and needle in str(exc.value)


def test_progress_reports_steps_and_previews(engine):
    updates = []
    engine.img2img(request(steps=8, denoising_strength=0.5, n_iter=2), on_progress=updates.append)
    # A1111: t_enc = int(0.5 * 8) = 4, and t_enc + 1 steps run
    assert [(u.job, u.step) for u in updates] == [(j, s) for j in (0, 1) for s in range(1, 6)]
    assert all(u.steps == 5 for u in updates) and updates[-1].fraction == 1.0
    previews = [u.preview for u in updates if u.preview is not None]
    assert len(previews) == 4 and previews[0].size == (8, 8)


def test_interrupt_keeps_finished_batches_and_returns_the_unfinished_one_as_it_stands(engine):
    """A1111: the batch being sampled comes back decoded from its current latents, with its infotext."""
    control = JobControl()

    def on_progress(update):
        if update.job == 1 and update.step == 1:
            control.interrupt()
    result = engine.img2img(request(n_iter=3), on_progress=on_progress, control=control)
    assert result.interrupted and result.seeds == [1234, 1235] and len(result.images) == 2
    assert parse_infotext(result.infotexts[1])["Seed"] == "1235"
    finished = engine.img2img(request(seed=1235)).images[0]
    # The interrupted picture is still noisy: one step in, not the finished picture of its seed.
    assert np.abs(np.asarray(result.images[1], "int16") - np.asarray(finished, "int16")).mean() > 1


def test_skip_drops_the_current_batch_and_goes_on(engine):
    control = JobControl()

    def on_progress(update):
        if update.job == 0 and update.step == 1:
            control.skip()
    result = engine.img2img(request(n_iter=2), on_progress=on_progress, control=control)
    assert not result.interrupted and result.skipped_batches == 1 and result.seeds == [1235]


def test_interrupt_from_another_thread_through_the_engine(engine):
    started = threading.Event()

    def on_progress(update):
        started.set()
        if update.step == 1:
            threading.Thread(target=engine.interrupt).start()
            threading.Event().wait(0.2)
    result = engine.img2img(request(n_iter=4), on_progress=on_progress)
    assert started.is_set() and result.interrupted and len(result.images) < 4
    assert not engine.busy


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_resize_modes_give_the_target_size(engine, mode):
    result = engine.img2img(request(resize_mode=mode, width=64, height=96, init_image=source_image(120, 72)))
    assert result.images[0].size == (64, 96)
    if mode is not ResizeMode.JUST_RESIZE:
        assert f"Resize mode: {mode.label}" in result.infotexts[0]


def test_zero_denoising_runs_one_step_at_the_smallest_sigma(engine):
    """A1111: t_enc = 0 still runs one step, from the model's smallest sigma (0.029): almost the VAE round trip;
    with img2img_fix_steps strength 0 runs nothing (the round trip itself, seed-independent)."""
    a = engine.img2img(request(denoising_strength=0.0, seed=1))
    b = engine.img2img(request(denoising_strength=0.0, seed=2))
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))  # a step ran: the seed shows
    a = engine.img2img(request(denoising_strength=0.0, seed=1, img2img_fix_steps=True))
    b = engine.img2img(request(denoising_strength=0.0, seed=2, img2img_fix_steps=True))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))


def test_long_prompt_past_75_tokens_changes_the_result(engine):
    long = "a barn, " * 40
    a = engine.img2img(request(prompt=long + "at noon"))
    b = engine.img2img(request(prompt=long + "in a snowy night with stars"))
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))  # the tail was not cut off


def test_saved_png_carries_infotext(engine):
    result = engine.img2img(request(save_images=True, negative_prompt="blurry", cfg_scale=6.5))
    (path,) = result.paths
    assert path.name == "00000-1234.png" and path.parent.parent.name == "img2img-images"
    with Image.open(path) as saved:
        text = read_infotext(saved)
    assert text == result.infotexts[0]
    info = parse_infotext(text)
    assert (info["Prompt"], info["Negative prompt"], info["CFG scale"]) == ("a red barn", "blurry", "6.5")
    assert info["Model"] == "demo-untrained" and info["Denoising strength"] == "0.75"


def test_rgba_init_image_is_flattened_on_white(engine):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    white = Image.new("RGB", (64, 64), "white")
    a = engine.img2img(request(init_image=rgba, denoising_strength=0.0))
    b = engine.img2img(request(init_image=white, denoising_strength=0.0))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))


def test_switching_models_frees_the_previous_one(tmp_path):
    from ldm_export import write_checkpoint  # noqa: PLC0415

    from pipelines.models.demo_model import build_demo_components

    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    components = build_demo_components()
    write_checkpoint(components, ckpt_dir / "tiny.safetensors")
    write_checkpoint(components, ckpt_dir / "other.safetensors")
    del components
    settings = parse_flags(["--data-dir", str(tmp_path)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    assert models.current.info.name == "other" and len(models.current.info.short_hash) == 10
    old_unet = weakref.ref(models.current.components.unet)
    models.pipeline("img2img")
    models.load("tiny")
    gc.collect()
    assert old_unet() is None, "the previous checkpoint's UNet is still referenced"


def test_color_correction_pulls_the_output_towards_the_init_colours(engine):
    warm = Image.new("RGB", (64, 64), (200, 120, 60))
    plain = engine.img2img(request(init_image=warm, denoising_strength=0.9))
    corrected = engine.img2img(request(init_image=warm, denoising_strength=0.9, color_correction=True))
    target = np.array([200, 120, 60])
    dist = lambda img: np.abs(pixels(img).reshape(-1, 3).mean(axis=0) - target).sum()  # noqa: E731
    assert dist(corrected.images[0]) < dist(plain.images[0])
    assert "Color correction: True" in corrected.infotexts[0]
