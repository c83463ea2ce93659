"""POST /sdapi/v1/txt2img over real HTTP: A1111's request fields and response shape, Hires. fix, override_settings,
the 422s naming the field, and txt2img -> img2img with the same seed reproduced."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from api import build_api_app
from api.testing import LiveServer
from api.txt2img import Txt2ImgBody
from pipelines.generation.txt2img_request import Txt2ImgRequest
from pipelines.io.infotext import parse_infotext

V1 = "/sdapi/v1"
# A1111's StableDiffusionTxt2ImgProcessingAPI fields a client may send (modules/api/models.py).
A1111_FIELDS = {
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "sampler_name", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale", "width",
    "height", "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid", "eta", "denoising_strength",
    "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "override_settings",
    "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at", "disable_extra_networks",
    "firstpass_image", "comments", "enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt", "force_task_id", "sampler_index", "script_name", "script_args",
    "send_images", "save_images", "alwayson_scripts", "infotext",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine = make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=1)
    app = build_api_app(engine.models.settings, engine.models, engine)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
        yield client, engine


def decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_body_has_every_a1111_field():
    assert A1111_FIELDS <= set(Txt2ImgBody.model_fields)


def test_txt2img_shape_and_types(server):
    client, _engine = server
    body = {"prompt": "a lighthouse", "negative_prompt": "fog", "steps": 3, "width": 64, "height": 64,
            "seed": 42, "sampler_name": "Euler a", "batch_size": 2}
    response = client.post(f"{V1}/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"}
    assert isinstance(data["info"], str) and data["parameters"]["prompt"] == "a lighthouse"
    assert data["parameters"]["enable_hr"] is False and data["parameters"]["hr_scale"] == 2.0
    info = json.loads(data["info"])
    assert info["all_seeds"] == [42, 43] and info["seed"] == 42 and info["width"] == 64
    assert isinstance(info["infotexts"], list) and info["sampler_name"] == "Euler a"
    pictures = [decode(text) for text in data["images"]]
    assert all(p.format == "PNG" for p in pictures)
    assert pictures[-1].size == (64, 64)
    text = pictures[-1].info["parameters"]
    assert parse_infotext(text)["Seed"] == "43" and parse_infotext(text)["Negative prompt"] == "fog"


def test_hires_fix_over_http(server):
    client, _engine = server
    body = {"prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64, "seed": 5, "enable_hr": True,
            "hr_scale": 2, "hr_upscaler": "Latent (bicubic antialiased)", "hr_second_pass_steps": 2,
            "denoising_strength": 0.6, "hr_sampler_name": "Use same sampler"}
    response = client.post(f"{V1}/txt2img", json=body)
    assert response.status_code == 200, response.text
    picture = decode(response.json()["images"][0])
    assert picture.size == (128, 128)
    info = parse_infotext(picture.info["parameters"])
    assert info["Hires upscaler"] == "Latent (bicubic antialiased)" and info["Hires upscale"] == "2"
    assert info["Denoising strength"] == "0.6" and "Hires sampler" not in info
    assert json.loads(response.json()["info"])["extra_generation_params"]["Hires steps"] == 2


def test_same_seed_same_picture_and_saved_with_override(server):
    client, engine = server
    body = {"prompt": "a boat", "steps": 3, "width": 64, "height": 64, "seed": 77, "sampler_name": "DDIM",
            "save_images": True, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    a, b = (client.post(f"{V1}/txt2img", json=body) for _ in range(2))
    assert a.status_code == b.status_code == 200
    pa, pb = decode(a.json()["images"][0]), decode(b.json()["images"][0])
    assert np.array_equal(np.asarray(pa), np.asarray(pb))
    assert parse_infotext(pa.info["parameters"])["Clip skip"] == "2"
    saved = list((engine.outputs_root / "txt2img-images").rglob("*.png"))
    assert saved, "save_images: true saves under outputs/txt2img-images/<date>/"
    # the engine reproduces the API's picture from the same request
    same = engine.txt2img(Txt2ImgRequest(prompt="a boat", steps=3, width=64, height=64, seed=77,
                                         sampler_name="DDIM", clip_skip=2, save_images=False))
    assert np.array_equal(np.asarray(same.images[0]), np.asarray(pa.convert("RGB")))


@pytest.mark.parametrize("body, field", [
    ({"width": 70}, "width"),
    ({"enable_hr": True, "hr_upscaler": "Nope"}, "hr_upscaler"),
    ({"enable_hr": True, "hr_scale": 100}, "hr_scale"),
    ({"sampler_name": "Bogus"}, "sampler_name"),
    ({"script_name": "sd upscale"}, "script_name"),
    ({"steps": "many"}, "steps"),
])
def test_bad_fields_are_422_naming_the_field(server, body, field):
    client, _engine = server
    response = client.post(f"{V1}/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64, **body})
    assert response.status_code == 422, response.text
    assert field in response.text
