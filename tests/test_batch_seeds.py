"""Fixed seed, fixed picture, whatever the batch: image i of any batch equals a single run at its recorded seed,
for every sampler (ancestral and SDE samplers draw per-image step noise too), and the step noise of the
stochastic samplers really comes from the image's seed."""

from __future__ import annotations

import numpy as np
import pytest
from demo_engine import make_demo_engine
from pictures import blocky_picture

from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SAMPLER_NAMES

# Samplers that add fresh noise at every step (ancestral, SDE, LCM): their pictures depend on where that
# noise comes from, not only on the initial noise.
STOCHASTIC = {"Euler a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 3M SDE", "DPM2 a", "LCM"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def picture():
    return blocky_picture(64, 64, seed=5)


def request(sampler, **kw):
    base = dict(init_image=picture(), prompt="a lighthouse", width=64, height=64, steps=4, seed=1000,
                denoising_strength=0.9, save_images=False, sampler_name=sampler,
                return_grid=False)  # image i of the batch, without A1111's grid first (tests/test_grids.py)
    base.update(kw)
    return Img2ImgRequest(**base)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_image_i_of_a_batch_equals_a_single_run_at_its_seed(engine, sampler):
    batch = engine.img2img(request(sampler, batch_size=3, n_iter=2))
    assert batch.seeds == list(range(1000, 1006))
    for image, seed in zip(batch.images, batch.seeds):
        single = engine.img2img(request(sampler, seed=seed)).images[0]
        # The UNet sees batches of 6 vs 2: float sums may round differently, never more than a level.
        assert np.abs(pixels(image) - pixels(single)).max() <= 1, f"{sampler}: seed {seed}"


@pytest.mark.parametrize("sampler", sorted(STOCHASTIC) + ["Euler"])
def test_step_noise_comes_from_the_seed(engine, sampler):
    """Variation strength 1 makes the initial noise the variation seed's alone, so two seeds with one variation
    seed start identically: only a stochastic sampler's step noise can tell them apart. Seeding it with a
    constant (or the run's first seed) would make the two pictures equal."""
    a = engine.img2img(request(sampler, seed=1, subseed=77, subseed_strength=1.0)).images[0]
    b = engine.img2img(request(sampler, seed=2, subseed=77, subseed_strength=1.0)).images[0]
    difference = np.abs(pixels(a) - pixels(b)).max()
    if sampler in STOCHASTIC:
        assert difference > 4  # deterministic samplers stay within 1 (LCM under A1111's schedule: 7)
    else:
        assert difference <= 1
