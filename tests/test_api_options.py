"""A1111's options, always-on scripts and leniency over real HTTP (issue 9, points 8, 10, 3, 11, 12):
POST/GET /options and override_settings reach the run; ignored fields and options give notices; output
folders stay inside the data dir; variation-seed batches; the Soft Inpainting always-on script; an all-black
mask and an unknown loopback curve are no-ops / fall-backs with a notice."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from api import build_api_app
from api.scripts import RegistryScripts
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.model_manager import ModelManager

V1 = "/sdapi/v1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    settings = parse_flags(["--data-dir", str(data), "--api"])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    app = build_api_app(settings, models, engine, scripts=RegistryScripts(engine, settings.models_dir))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield {"client": client, "data": data, "settings": settings}


@pytest.fixture
def client(setup):
    return setup["client"]


@pytest.fixture
def restore_options(client):
    before = client.get(f"{V1}/options").json()
    yield
    keep = {k: before[k] for k in ("CLIP_stop_at_last_layers", "samples_format", "outdir_img2img_samples",
                                   "s_churn", "img2img_background_color", "samples_save")}
    assert client.post(f"{V1}/options", json=keep).status_code == 200


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def picture(size=(64, 64)) -> Image.Image:
    rng = np.random.RandomState(3)
    return Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8"), "RGB")


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def run(client, **changes):
    body = {"init_images": [b64(picture())], "prompt": "a barn", "width": 64, "height": 64, "steps": 3,
            "denoising_strength": 0.5, "seed": 77, "sampler_name": "Euler a"}
    body.update(changes)
    r = client.post(f"{V1}/img2img", json=body)
    assert r.status_code == 200, r.text
    return r.json(), json.loads(r.json()["info"])


# 1. GET / POST /options -------------------------------------------------------------------------------------
def test_get_options_lists_a1111_img2img_options_with_their_defaults(client):
    options = client.get(f"{V1}/options").json()
    assert options["CLIP_stop_at_last_layers"] == 1 and options["inpainting_mask_weight"] == 1.0
    assert options["img2img_color_correction"] is False and options["img2img_fix_steps"] is False
    assert options["img2img_background_color"] == "#ffffff" and options["samples_format"] == "png"
    assert options["initial_noise_multiplier"] == 1.0 and options["eta_noise_seed_delta"] == 0
    assert options["randn_source"] == "GPU" and options["eta_ancestral"] == 1.0
    assert options["outdir_img2img_samples"] == "outputs/img2img-images"


def test_options_round_trip_and_apply_to_every_run(client, restore_options):
    r = client.post(f"{V1}/options", json={"CLIP_stop_at_last_layers": 2, "samples_format": "WEBP"})
    assert r.status_code == 200, r.text
    options = client.get(f"{V1}/options").json()
    assert options["CLIP_stop_at_last_layers"] == 2 and options["samples_format"] == "webp"
    body, info = run(client)
    assert info["clip_skip"] == 2 and parse_infotext(info["infotexts"][0])["Clip skip"] == "2"
    assert "Clip skip: 2" in decode(body["images"][0]).info["parameters"]


@pytest.mark.parametrize("values, field", [
    ({"CLIP_stop_at_last_layers": 13}, "CLIP_stop_at_last_layers"),
    ({"samples_format": "gif"}, "samples_format"),
    ({"inpainting_mask_weight": "heavy"}, "inpainting_mask_weight"),
    ({"outdir_img2img_samples": "../../escape"}, "outdir_img2img_samples"),
    ({"outdir_img2img_samples": "/tmp"}, "outdir_img2img_samples"),
])
def test_bad_options_are_refused_naming_the_key(client, values, field):
    r = client.post(f"{V1}/options", json={**values, "samples_format": "jpg"} if field != "samples_format"
                    else values)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])
    assert client.get(f"{V1}/options").json()["samples_format"] == "png"  # nothing applied


# 2. override_settings -------------------------------------------------------------------------------------------
def test_override_settings_apply_for_one_request(client):
    _, info = run(client, override_settings={"CLIP_stop_at_last_layers": 2})
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    _, plain = run(client)
    assert plain["clip_skip"] == 1 and "Clip skip" not in plain["infotexts"][0]
    assert client.get(f"{V1}/options").json()["CLIP_stop_at_last_layers"] == 1


def test_override_samples_format_and_folder_save_there(client, setup):
    _, info = run(client, save_images=True,
                  override_settings={"samples_format": "jpg", "outdir_img2img_samples": "my-outputs"})
    saved = list((setup["data"] / "my-outputs").rglob("*.jpg"))
    assert len(saved) == 1
    with Image.open(saved[0]) as image:
        assert image.format == "JPEG"


@pytest.mark.parametrize("folder", ["../outside", "/etc", "outputs/../../up"])
def test_override_folder_escaping_the_data_dir_is_a_422(client, folder):
    r = client.post(f"{V1}/img2img", json={"init_images": [b64(picture())], "steps": 2, "width": 64, "height": 64,
                                           "override_settings": {"outdir_img2img_samples": folder}})
    assert r.status_code == 422, r.text
    detail = json.dumps(r.json()["detail"])
    assert "override_settings.outdir_img2img_samples" in detail and "outside the data directory" in detail


def test_override_background_colour_flattens_transparency(client):
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    body = {"init_images": [b64(transparent)], "steps": 2, "width": 64, "height": 64, "seed": 5,
            "denoising_strength": 0.3, "sampler_name": "Euler"}
    white = client.post(f"{V1}/img2img", json=body).json()
    red = client.post(f"{V1}/img2img", json={**body, "override_settings": {"img2img_background_color": "#ff0000"}})
    assert red.status_code == 200, red.text
    a, b = (np.asarray(decode(x["images"][0]), dtype=int) for x in (white, red.json()))
    assert np.abs(a - b).max() > 0


def test_override_settings_bad_value_is_a_422(client):
    r = client.post(f"{V1}/img2img", json={"init_images": [b64(picture())],
                                           "override_settings": {"CLIP_stop_at_last_layers": 0}})
    assert r.status_code == 422
    assert "override_settings.CLIP_stop_at_last_layers" in json.dumps(r.json()["detail"])


# 3. Ignored fields and options: notices, never silent success ------------------------------------------------
def test_ignored_fields_and_options_give_notices(client):
    _, info = run(client, latent_mask=b64(picture()), styles=["Cinematic"], s_churn=0.5,
                  override_settings={"s_noise": 0.9, "my_extension_option": 1, "eta_ddim": 0.0})
    text = " | ".join(info["notices"])
    assert "latent_mask" in text and "styles" in text and "s_churn" in text
    assert "s_noise = 0.9" in text and "my_extension_option" in text
    assert "eta_ddim" not in text  # A1111's default: nothing was asked for


def test_stored_ignored_option_is_noticed_on_every_run(client, restore_options):
    assert client.post(f"{V1}/options", json={"s_churn": 1.5}).status_code == 200
    _, info = run(client)
    assert any("s_churn = 1.5" in n for n in info["notices"])


def test_plain_run_has_no_notices(client):
    _, info = run(client)
    assert info["notices"] == []


def test_samples_save_false_turns_saving_off(client, setup, restore_options):
    assert client.post(f"{V1}/options", json={"samples_save": False, "outdir_img2img_samples": "off"}).status_code \
        == 200
    run(client, save_images=True)
    assert not (setup["data"] / "off").exists()


# 4. Variation-seed batches ------------------------------------------------------------------------------------
def test_all_seeds_and_subseeds_without_variation(client):
    _, info = run(client, batch_size=2, n_iter=2, seed=100, subseed=500)
    assert info["all_seeds"] == [100, 101, 102, 103] and info["all_subseeds"] == [500, 501, 502, 503]


def test_all_seeds_constant_with_variation(client):
    _, info = run(client, batch_size=2, n_iter=2, seed=100, subseed=500, subseed_strength=0.4)
    assert info["all_seeds"] == [100, 100, 100, 100] and info["all_subseeds"] == [500, 501, 502, 503]
    texts = info["infotexts"][info["index_of_first_image"]:]  # after A1111's grid
    assert [parse_infotext(t)["Variation seed"] for t in texts] == ["500", "501", "502", "503"]


# 5. Infotext / info ------------------------------------------------------------------------------------------
def test_denoising_strength_is_in_extra_generation_params(client):
    _, info = run(client, denoising_strength=0.45)
    assert info["extra_generation_params"]["Denoising strength"] == 0.45


def test_inpaint_keys_in_a1111_order_over_http(client):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    _, info = run(client, mask=b64(mask), inpainting_mask_invert=1, inpainting_fill=0, inpaint_full_res=True,
                  inpaint_full_res_padding=8, mask_blur=3)
    keys = list(parse_infotext(info["infotexts"][0]))
    order = ["Denoising strength", "Mask mode", "Mask blur", "Inpaint area", "Masked area padding",
             "Masked content"]
    assert [k for k in keys if k in order] == order
    extra = info["extra_generation_params"]
    assert extra["Mask blur"] == 3 and extra["Masked content"] == "fill" and extra["Mask mode"] == "Inpaint not masked"


# 6. Soft Inpainting as an always-on script -------------------------------------------------------------------
def test_scripts_lists_soft_inpainting(client):
    assert "soft inpainting" in client.get(f"{V1}/scripts").json()["img2img"]


def test_soft_inpainting_alwayson_enables_it(client):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    _, on = run(client, mask=b64(mask), mask_blur=8,
                alwayson_scripts={"Soft Inpainting": {"args": [True, 1, 0.5, 4, 0, 0.5, 2]}})
    _, off = run(client, mask=b64(mask), mask_blur=8,
                 alwayson_scripts={"soft inpainting": {"args": [False, 1, 0.5, 4, 0, 0.5, 2]}})
    assert parse_infotext(on["infotexts"][0])["Soft inpainting enabled"] == "True"
    assert "Soft inpainting enabled" not in parse_infotext(off["infotexts"][0])
    assert on["notices"] == []  # A1111's defaults: nothing unapplied


def test_soft_inpainting_tuning_values_get_a_notice(client):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    _, info = run(client, mask=b64(mask), alwayson_scripts={"Soft Inpainting": {"args": [True, 2.5, 0.5, 4, 0, 1,
                                                                                          2]}})
    text = " | ".join(info["notices"])
    assert "Schedule bias 2.5" in text and "Difference threshold 1" in text and "Preservation" not in text


@pytest.mark.parametrize("scripts, field", [
    ({"ControlNet": {"args": []}}, "alwayson_scripts"),
    ({"Soft Inpainting": {"args": [True, "strong"]}}, "alwayson_scripts.Soft Inpainting.args[1]"),
    ({"Soft Inpainting": {"args": [True, 9.0]}}, "alwayson_scripts.Soft Inpainting.args[1]"),
])
def test_bad_alwayson_scripts_are_422(client, scripts, field):
    r = client.post(f"{V1}/img2img", json={"init_images": [b64(picture())], "alwayson_scripts": scripts})
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])


# 7. Leniency ---------------------------------------------------------------------------------------------------
def test_all_black_mask_returns_the_picture_unchanged_with_a_notice(client):
    body, info = run(client, mask=b64(Image.new("L", (64, 64), 0)), batch_size=2)
    assert len(body["images"]) == 3 and info["all_seeds"] == [77, 78]  # the grid first
    original = np.asarray(picture(), dtype=int)
    assert all(np.array_equal(np.asarray(decode(b).convert("RGB"), dtype=int), original)
               for b in body["images"][1:])
    assert any("mask is all black" in n for n in info["notices"])


def test_unknown_loopback_curve_falls_back_to_linear_with_a_notice(client):
    body, info = run(client, script_name="Loopback", script_args=[2, 0.3, "Wobbly", "None"])
    assert any("'Wobbly'" in n and "Linear" in n for n in info["notices"])
    assert "Denoising curve: Linear" in info["infotexts"][0]


def test_misread_input_stays_a_422(client):
    r = client.post(f"{V1}/img2img", json={"init_images": [b64(picture())], "script_name": "Loopback",
                                           "script_args": ["four", 0.3, "Linear", "None"]})
    assert r.status_code == 422
