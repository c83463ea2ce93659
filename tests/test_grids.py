"""A1111's grid of a run with several images: the row rule (images.image_grid), its place in the results
(first image, first infotext; seeds without it), saving in img2img-grids/<date>/grid-NNNN.png, the options
return_grid / grid_save / n_rows, and the same over real HTTP (/sdapi/v1/img2img)."""

from __future__ import annotations

import base64
import io
import json
import math

import httpx
import numpy as np
import pytest
from demo_engine import make_demo_engine
from pictures import blocky_picture
from PIL import Image

from api import build_api_app
from api.testing import LiveServer
from pipelines.generation.grids import add_grid
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images.tiles import grid_rows, make_image_grid
from pipelines.io.outputs import read_infotext
from pipelines.options import BY_KEY

# A1111's auto rule, written out for n = 2..9: rows = round(sqrt(n)); with grid_prevent_empty_spots the largest
# rows <= floor(sqrt(n)) that divides n.
AUTO_ROWS = {2: 1, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3}
NO_EMPTY_ROWS = {2: 1, 3: 1, 4: 2, 5: 1, 6: 2, 7: 1, 8: 2, 9: 3}


@pytest.mark.parametrize("n", range(2, 10))
def test_row_rule_matches_a1111(n):
    assert grid_rows(n) == AUTO_ROWS[n]
    assert grid_rows(n, prevent_empty_spots=True) == NO_EMPTY_ROWS[n]
    assert grid_rows(n, batch_size=2, n_rows=0) == min(2, n)  # 0: as many rows as the batch size
    assert grid_rows(n, n_rows=3) == min(3, n)  # a fixed count, never more rows than images
    images = [Image.new("RGB", (8, 6), (i * 20, 0, 0)) for i in range(n)]
    rows = AUTO_ROWS[n]
    grid = make_image_grid(images, rows, (255, 255, 255))
    cols = math.ceil(n / rows)
    assert grid.size == (cols * 8, rows * 6)
    for i in range(n):  # row-major cells
        assert grid.getpixel((i % cols * 8 + 4, i // cols * 6 + 3)) == (i * 20, 0, 0)
    if rows * cols > n:  # an empty cell shows the background
        assert grid.getpixel((cols * 8 - 1, rows * 6 - 1)) == (255, 255, 255)


def test_cells_are_as_large_as_the_largest_image_and_centre_smaller_ones():
    grid = make_image_grid([Image.new("RGB", (10, 10), (9, 9, 9)), Image.new("RGB", (4, 6), (200, 0, 0))], 1,
                           (255, 255, 255))
    assert grid.size == (20, 10)
    assert grid.getpixel((15, 5)) == (200, 0, 0) and grid.getpixel((11, 5)) == (255, 255, 255)


def test_options_are_declared_with_a1111_defaults():
    assert BY_KEY["return_grid"].default is True and BY_KEY["grid_save"].default is True
    assert BY_KEY["n_rows"].default == -1 and (BY_KEY["n_rows"].minimum, BY_KEY["n_rows"].maximum) == (-1, 16)
    assert BY_KEY["grid_format"].default == "png" and BY_KEY["grid_only_if_multiple"].default is True


# -- the engine ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def request(**kw):
    base = dict(init_image=blocky_picture(64, 64), prompt="a grid", width=64, height=64, steps=2, seed=40,
                denoising_strength=0.6, save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


def cell(grid, index, cols, size=64):
    x, y = index % cols * size, index // cols * size
    return np.asarray(grid.crop((x, y, x + size, y + size)))


def test_a_batch_returns_its_grid_first_with_the_first_infotext(engine):
    result = engine.img2img(request(batch_size=2, n_iter=2))
    assert len(result.images) == 5 and result.index_of_first_image == 1
    grid = result.images[0]
    assert grid.size == (128, 128)  # 4 images: 2 rows x 2 columns
    for i, image in enumerate(result.images[1:]):
        assert np.array_equal(cell(grid, i, 2), np.asarray(image))
    assert result.seeds == [40, 41, 42, 43]  # the grid has no seed of its own (A1111's all_seeds)
    assert result.infotexts[0] == result.infotexts[1] and "Seed: 40," in result.infotexts[0]
    assert len(result.infotexts) == 5


def test_one_image_no_grid_and_return_grid_off(engine, tmp_path):
    single = engine.img2img(request())
    assert len(single.images) == 1 and single.index_of_first_image == 0
    off = engine.img2img(request(batch_size=3, return_grid=False, save_images=True, outdir_grids=tmp_path / "g"))
    assert len(off.images) == 3 and off.index_of_first_image == 0
    saved = list((tmp_path / "g").rglob("grid-*.png"))
    assert [path.name for path in saved] == ["grid-0000.png"]  # grid_save still saves it; A1111's name
    engine.img2img(request(batch_size=2, seed=77, save_images=True, outdir_grids=tmp_path / "g",
                           grid_extended_filename=True, grid_format="jpg"))
    assert sorted(path.name for path in (tmp_path / "g").rglob("grid-*")) == ["grid-0000.png", "grid-0001-77.jpg"]


def test_n_rows_sets_the_layout(engine):
    result = engine.img2img(request(batch_size=3, n_rows=3))
    assert result.images[0].size == (64, 192)
    result = engine.img2img(request(batch_size=2, n_iter=2, n_rows=0))  # 0: rows = batch size
    assert result.images[0].size == (128, 128)


def test_grid_saved_in_img2img_grids_with_its_infotext(engine):
    result = engine.img2img(request(batch_size=2, save_images=True))
    assert result.grid_path is not None
    assert result.grid_path.parent.parent == engine.outputs_root / "img2img-grids"
    assert result.grid_path.name.startswith("grid-") and result.grid_path.suffix == ".png"
    with Image.open(result.grid_path) as saved:
        assert read_infotext(saved) == result.infotexts[1]
        assert saved.size == (128, 64)
    assert result.paths[0] == result.grid_path and len(result.paths) == 3  # aligned with images
    again = engine.img2img(request(batch_size=2, save_images=True, grid_save=False))
    assert again.grid_path is None and len(again.images) == 3


def test_a_run_inside_a_script_job_gets_no_grid(engine):
    with engine.job():  # A1111's scripts set do_not_save_grid: they make their own outputs
        result = engine.img2img(request(batch_size=2))
    assert len(result.images) == 2 and result.index_of_first_image == 0


def test_add_grid_is_generic_and_never_adds_two(engine, tmp_path):
    result = engine.img2img(request(batch_size=2, return_grid=False))
    add_grid(result, request(batch_size=2), tmp_path)
    add_grid(result, request(batch_size=2), tmp_path)
    assert len(result.images) == 3 and result.index_of_first_image == 1


# -- over HTTP ----------------------------------------------------------------------------------------------
def png_b64(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def client(engine):
    app = build_api_app(engine.models.settings, engine.models, engine)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def test_http_img2img_returns_the_grid_first(client):
    body = {"init_images": [png_b64(blocky_picture(64, 64))], "prompt": "a grid", "width": 64, "height": 64,
            "steps": 2, "seed": 7, "batch_size": 2, "n_iter": 2, "denoising_strength": 0.6}
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert len(data["images"]) == 5
    images = [Image.open(io.BytesIO(base64.b64decode(text))) for text in data["images"]]
    assert images[0].size == (128, 128) and all(image.size == (64, 64) for image in images[1:])
    assert np.array_equal(cell(images[0].convert("RGB"), 3, 2), np.asarray(images[4].convert("RGB")))
    assert info["index_of_first_image"] == 1 and info["all_seeds"] == [7, 8, 9, 10]
    assert len(info["infotexts"]) == 5 and len(info["all_prompts"]) == 4
    one = client.post("/sdapi/v1/img2img", json={**body, "batch_size": 1, "n_iter": 1}).json()
    assert len(one["images"]) == 1 and json.loads(one["info"])["index_of_first_image"] == 0
    off = client.post("/sdapi/v1/img2img", json={**body, "override_settings": {"return_grid": False}}).json()
    assert len(off["images"]) == 4 and json.loads(off["info"])["index_of_first_image"] == 0
