"""txt2img and Hires. fix on the tiny demo model: seeds, batches, A1111's schedules, hires sizes / steps /
infotext, interrupt, saving, validation."""

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine, make_nine_channel_engine

from pipelines.fields import RequestError
from pipelines.generation.hires import hires_target
from pipelines.generation.progress import JobControl
from pipelines.generation.samplers import resolve_sampler
from pipelines.generation.schedules import DiscreteSigmas, a1111_timesteps
from pipelines.generation.txt2img import txt2img_schedule
from pipelines.generation.txt2img_request import Txt2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=2)


def request(**kw):
    base = dict(prompt="a red barn", width=64, height=64, steps=4, seed=1234, save_images=False)
    base.update(kw)
    return Txt2ImgRequest(**base)


def items(result):
    """The run's own pictures (a grid, when there is one, leads result.images)."""
    return result.images[result.index_of_first_image:]


def pixels(img):
    return np.asarray(img, dtype=np.int16)


def test_same_seed_same_pixels_other_seed_differs(engine):
    a, b = engine.txt2img(request()), engine.txt2img(request())
    c = engine.txt2img(request(seed=99))
    assert a.images[0].size == (64, 64)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert not np.array_equal(pixels(a.images[0]), pixels(c.images[0]))


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM", "DPM++ 2M"])
def test_batch_item_equals_single_run_at_its_seed(engine, sampler):
    batch = engine.txt2img(request(batch_size=2, sampler_name=sampler))
    single = engine.txt2img(request(seed=1235, sampler_name=sampler))
    assert batch.seeds == [1234, 1235]
    assert np.abs(pixels(items(batch)[1]) - pixels(single.images[0])).max() <= 1


def test_variation_seed_changes_the_picture_and_is_recorded(engine):
    plain = engine.txt2img(request())
    varied = engine.txt2img(request(subseed=7, subseed_strength=0.5))
    assert not np.array_equal(pixels(plain.images[0]), pixels(varied.images[0]))
    info = parse_infotext(varied.infotexts[0])
    assert info["Variation seed"] == "7" and info["Variation seed strength"] == "0.5"


def test_a1111_txt2img_schedules():
    model = DiscreteSigmas.from_scheduler_config({"num_train_timesteps": 1000, "beta_start": 0.00085,
                                                  "beta_end": 0.012, "beta_schedule": "scaled_linear"})
    euler = txt2img_schedule(resolve_sampler("Euler"), model, 20)
    assert euler.steps == 20 and euler.start_sigma == pytest.approx(model.sigma_max)  # from sigma_max
    ddim = txt2img_schedule(resolve_sampler("DDIM"), model, 20)
    ts = a1111_timesteps(20)
    # A1111's ddim walks every timestep from the top one down to timesteps[1] (img2img stops one short)
    assert list(ddim.timesteps) == list(ts[19:0:-1]) and ddim.steps == 19
    plms = txt2img_schedule(resolve_sampler("PLMS"), model, 20)
    assert plms.steps == 20 and list(plms.timesteps[:2]) == [ts[19], ts[18]]
    unipc = txt2img_schedule(resolve_sampler("UniPC"), model, 10)
    assert unipc.steps == 10 and unipc.timesteps[0] == pytest.approx(999)


def test_the_pipeline_starts_at_noise_times_the_first_sigma_or_at_the_noise(engine):
    """A1111's txt2img: x = noise * sigmas[0] for k-diffusion samplers; DDIM / PLMS / UniPC start at x = noise."""
    pipe = engine.models.pipeline("txt2img")
    config = engine.models.current.components.scheduler.config
    sampler = resolve_sampler("Euler")
    schedule = txt2img_schedule(sampler, DiscreteSigmas.from_scheduler_config(config), 10)
    pipe.scheduler = sampler.make_scheduler(config, 0, schedule)
    pipe.scheduler.set_timesteps(10)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with pipe.noise(noise):
        start = pipe.prepare_latents(2, 4, 64, 64, torch.float32, torch.device("cpu"), None)
    assert torch.allclose(start, noise * float(schedule.sigmas[0]), rtol=1e-5)
    with pipe.noise(noise, pure=True):
        assert torch.equal(pipe.prepare_latents(2, 4, 64, 64, torch.float32, torch.device("cpu"), None), noise)
    assert engine.models.pipeline("txt2img").unet is engine.models.pipeline("img2img").unet  # one set of weights


def test_infotext_is_a1111_txt2img_and_saved_under_txt2img_images(engine):
    result = engine.txt2img(request(save_images=True, negative_prompt="blurry"))
    path = result.paths[-1]
    assert path.parent.parent.name == "txt2img-images"
    text = result.infotexts[0]
    assert read_infotext(__import__("PIL.Image").Image.open(path)) == text
    info = parse_infotext(text)
    assert info["Negative prompt"] == "blurry" and info["Size-1"] == "64" and info["Steps"] == "4"
    assert "Denoising strength" not in info  # A1111's txt2img writes it only with Hires. fix
    keys = list(info)
    assert keys.index("Steps") < keys.index("Sampler") < keys.index("Seed") < keys.index("Size-1")


def test_hires_scale_sizes_steps_and_infotext(engine):
    updates = []
    result = engine.txt2img(request(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3, denoising_strength=0.5,
                                    sampler_name="Euler"), updates.append)
    assert result.images[0].size == (96, 96)
    # two passes per batch: 4 steps at 64x64, then the img2img rule's int(0.5 * 3) + 1 = 2 steps
    assert {(u.job, u.job_count, u.steps) for u in updates} == {(0, 2, 4), (1, 2, 2)}
    info = parse_infotext(result.infotexts[0])
    assert info["Size-1"] == "64"  # A1111 records the first pass's size
    assert info["Denoising strength"] == "0.5" and info["Hires upscale"] == "1.5"
    assert info["Hires steps"] == "3" and info["Hires upscaler"] == "Latent"
    keys = list(info)
    assert keys.index("Denoising strength") < keys.index("Hires upscale") < keys.index("Hires steps") \
        < keys.index("Hires upscaler") < keys.index("Version")


def test_hires_resize_crops_to_the_box_and_upscaler_path(engine):
    assert hires_target(64, 64, 2, 128, 96).width == 128 and hires_target(64, 64, 2, 128, 96).height == 96
    result = engine.txt2img(request(enable_hr=True, hr_resize_x=128, hr_resize_y=96, hr_upscaler="Lanczos",
                                    hr_prompt="a blue barn", hr_sampler_name="Euler"))
    assert result.images[0].size == (128, 96)
    info = parse_infotext(result.infotexts[0])
    assert info["Hires resize-1"] == "128" and info["Hires resize-2"] == "96"
    assert info["Hires upscaler"] == "Lanczos" and info["Hires prompt"] == "a blue barn"
    assert info["Hires sampler"] == "Euler"


def test_hires_modes_differ_and_denoising_matters(engine):
    base = dict(enable_hr=True, hr_scale=2.0, hr_second_pass_steps=2, sampler_name="Euler")
    latent = engine.txt2img(request(**base)).images[0]
    nearest = engine.txt2img(request(hr_upscaler="Latent (nearest)", **base)).images[0]
    assert latent.size == nearest.size == (128, 128)
    assert not np.array_equal(pixels(latent), pixels(nearest))


def test_hires_batch_item_equals_single_run(engine):
    base = dict(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, sampler_name="Euler a")
    batch = engine.txt2img(request(batch_size=2, **base))
    single = engine.txt2img(request(seed=1235, **base))
    assert np.abs(pixels(items(batch)[1]) - pixels(single.images[0])).max() <= 1


@pytest.mark.parametrize("stop_in_job, size", [(0, (64, 64)), (1, (96, 96))])
def test_interrupt_returns_the_partial_pass(engine, stop_in_job, size):
    control = JobControl()

    def on_progress(update):
        if update.job == stop_in_job and update.step == 2:
            control.interrupt()

    result = engine.txt2img(request(enable_hr=True, hr_scale=1.5, denoising_strength=1.0, steps=6, n_iter=2),
                            on_progress, control)
    assert result.interrupted
    assert [im.size for im in result.images] == [size]
    assert result.seeds == [1234]


def test_validation_names_the_field(engine):
    with pytest.raises(RequestError) as err:
        engine.txt2img(request(enable_hr=True, hr_upscaler="No such upscaler"))
    assert err.value.field == "hr_upscaler" and "Latent (bicubic)" in err.value.message
    with pytest.raises(RequestError) as err:
        engine.txt2img(request(enable_hr=True, hr_scale=80.0))
    assert err.value.field == "hr_scale"
    with pytest.raises(RequestError) as err:
        engine.txt2img(request(width=65))
    assert err.value.field == "width"
    with pytest.raises(RequestError) as err:
        engine.txt2img(request(enable_hr=True, hr_sampler_name="Nope"))
    assert err.value.field == "hr_sampler_name"


def test_inpainting_model_is_refused_with_a_clear_error(tmp_path):
    nine = make_nine_channel_engine(tmp_path)
    with pytest.raises(RequestError) as err:
        nine.txt2img(request())
    assert "inpainting" in err.value.message


def test_a_batch_also_gives_a1111s_grid_in_txt2img_grids(engine):
    result = engine.txt2img(request(batch_size=2, sampler_name="Euler", save_images=True))
    assert result.index_of_first_image == 1 and len(result.images) == 3
    assert result.images[0].size == (128, 64)  # two 64x64 side by side
    assert result.grid_path is not None and result.grid_path.parent.parent.name == "txt2img-grids"
    assert parse_infotext(result.infotexts[0])["Seed"] == "1234"
