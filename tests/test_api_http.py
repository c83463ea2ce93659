"""The /sdapi/v1 API over real HTTP (uvicorn on a loopback port): every endpoint, A1111's response shapes,
the errors (status + the field named), Basic auth, options / override_settings with real checkpoint files.

The server runs two tiny checkpoints written in A1111's single-file layout (alpha, beta) and a VAE file.
"""

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from api import build_api_app
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.fields import RequestError
from pipelines.generation.engine import Engine
from pipelines.launch_flags import parse_flags
from pipelines.models.demo_model import build_demo_components
from pipelines.models.model_manager import ModelManager
from tests.ldm_export import write_checkpoint, write_vae

V1 = "/sdapi/v1"


# -- fakes for the collaborators passed in ---------------------------------------------------------------
class FakeScripts:
    """Stands in for scripts/registry.py: two named scripts that run the engine like a real one would."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = []

    def names(self):
        return ["Loopback", "SD upscale"]

    def run(self, name, request, script_args, on_progress, control):
        self.calls.append((name, list(script_args)))
        if len(script_args) != 2:
            raise RequestError("script_args", f"expected [loops, final strength], got {script_args!r}")
        loops = script_args[0]
        result = self.engine.img2img(
            request.replace(n_iter=loops, extra_generation_params={"Loops": loops}), on_progress, control
        )
        return result


class FakeInterrogator:
    def __init__(self, fail=False):
        self.fail = fail
        self.sizes = []

    def interrogate(self, image):
        if self.fail:
            raise FileNotFoundError(
                "BLIP weights missing: put model_base_caption_capfilt_large.pth in models/BLIP"
            )
        self.sizes.append((image.mode, image.size))
        return "a red square, flat colour"


def upscaler_provider():
    return [
        {
            "name": "R-ESRGAN 4x+",
            "model_name": "RealESRGAN_x4plus",
            "model_path": Path("/m/x4.pth"),
            "scale": 4,
        },
        {"name": "Lanczos"},
    ]


# -- the server ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    demo = build_demo_components()
    (data / "models" / "Stable-diffusion").mkdir(parents=True)
    (data / "models" / "VAE").mkdir(parents=True)
    write_checkpoint(demo, data / "models" / "Stable-diffusion" / "alpha.safetensors")
    write_checkpoint(demo, data / "models" / "Stable-diffusion" / "beta.safetensors", half=True)
    write_vae(demo.vae, data / "models" / "VAE" / "tiny.vae.safetensors")
    settings = parse_flags(["--data-dir", str(data), "--api"])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir, preview_every=1)
    scripts = FakeScripts(engine)
    app = build_api_app(
        settings,
        models,
        engine,
        scripts=scripts,
        interrogator=FakeInterrogator(),
        upscalers=upscaler_provider,
    )
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield {
            "client": client,
            "settings": settings,
            "models": models,
            "engine": engine,
            "data": data,
            "scripts": scripts,
            "url": server.url,
        }


@pytest.fixture
def client(setup):
    return setup["client"]


@pytest.fixture
def titles(setup):
    return setup["models"].checkpoint_titles()


def png_b64(image: Image.Image, text: dict | None = None) -> str:
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def source(color=(200, 60, 40), size=(64, 64)) -> Image.Image:
    rng = np.random.RandomState(sum(color))
    noise = (rng.rand(size[1], size[0], 3) * 60).astype("int16")
    return Image.fromarray(np.clip(np.array(color, "int16") + noise - 30, 0, 255).astype("uint8"), "RGB")


INIT = png_b64(source())


def payload(**changes):
    body = {
        "init_images": [INIT],
        "prompt": "a red barn",
        "width": 64,
        "height": 64,
        "steps": 4,
        "denoising_strength": 0.5,
        "seed": 1234,
        "sampler_name": "Euler a",
    }
    body.update(changes)
    return body


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def img2img(client, **changes):
    return client.post(f"{V1}/img2img", json=payload(**changes))


def assert_field_error(response, field, status=422):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    text = json.dumps(detail)
    assert field in text, f"{field!r} not named in {detail!r}"


# -- img2img ------------------------------------------------------------------------------------------
def test_img2img_response_has_a1111_shape_seeds_and_infotexts(client):
    r = img2img(client, batch_size=2, n_iter=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "parameters", "info"}
    assert len(body["images"]) == 5  # A1111's grid first (index_of_first_image 1), then the 4 images
    assert decode(body["images"][0]).size == (128, 128)
    assert all(decode(b).size == (64, 64) and decode(b).format == "PNG" for b in body["images"][1:])
    info = json.loads(body["info"])
    assert info["seed"] == 1234 and info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert len(info["all_subseeds"]) == 4 and info["all_subseeds"][1] == info["subseed"] + 1
    assert info["all_prompts"] == ["a red barn"] * 4 and info["prompt"] == "a red barn"
    for key in (
        "negative_prompt",
        "all_negative_prompts",
        "subseed_strength",
        "width",
        "height",
        "sampler_name",
        "cfg_scale",
        "steps",
        "batch_size",
        "restore_faces",
        "face_restoration_model",
        "sd_model_name",
        "sd_model_hash",
        "sd_vae_name",
        "sd_vae_hash",
        "seed_resize_from_w",
        "seed_resize_from_h",
        "denoising_strength",
        "extra_generation_params",
        "index_of_first_image",
        "infotexts",
        "styles",
        "job_timestamp",
        "clip_skip",
        "is_using_inpainting_conditioning",
        "version",
    ):
        assert key in info, key
    assert (info["width"], info["height"], info["steps"], info["batch_size"]) == (64, 64, 4, 2)
    assert info["sampler_name"] == "Euler a" and info["denoising_strength"] == 0.5
    assert info["sd_model_name"] == "alpha" and len(info["sd_model_hash"]) == 10
    assert info["index_of_first_image"] == 1 and len(info["infotexts"]) == 5
    assert [f"Seed: {s}," in t for s, t in zip(info["all_seeds"], info["infotexts"][1:])] == [True] * 4
    # the request echo: init images and mask nulled by default
    params = body["parameters"]
    assert params["init_images"] is None and params["mask"] is None
    assert params["prompt"] == "a red barn" and params["seed"] == 1234 and params["n_iter"] == 2


def test_same_seed_gives_same_pixels_over_http(client):
    a, b = img2img(client).json()["images"][0], img2img(client).json()["images"][0]
    assert np.array_equal(np.asarray(decode(a)), np.asarray(decode(b)))


def test_returned_png_infotext_reads_back_through_png_info(client):
    body = img2img(client, negative_prompt="blurry, low quality", seed=77).json()
    info = json.loads(body["info"])
    r = client.post(f"{V1}/png-info", json={"image": body["images"][0]})
    assert r.status_code == 200, r.text
    read = r.json()
    assert read["info"] == info["infotexts"][0]
    params = read["parameters"]
    assert params["Prompt"] == "a red barn" and params["Negative prompt"] == "blurry, low quality"
    assert params["Seed"] == "77" and params["Steps"] == "4" and params["Sampler"] == "Euler a"
    assert (params["Size-1"], params["Size-2"]) == ("64", "64") and params["Model"] == "alpha"


def test_png_info_lists_other_text_chunks_and_accepts_data_urls(client):
    image = png_b64(
        source(), {"parameters": "cat\nSteps: 5, Sampler: Euler, Seed: 3", "Software": "test-suite"}
    )
    r = client.post(f"{V1}/png-info", json={"image": "data:image/png;base64," + image})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == {"Software": "test-suite"}
    assert r.json()["parameters"]["Prompt"] == "cat" and r.json()["parameters"]["Seed"] == "3"
    plain = client.post(f"{V1}/png-info", json={"image": png_b64(source())}).json()
    assert plain == {"info": "", "items": {}, "parameters": {}}
    assert_field_error(client.post(f"{V1}/png-info", json={"image": "not base64 !!"}), "image")


def test_include_init_images_echoes_them(client):
    body = img2img(client, include_init_images=True).json()
    assert body["parameters"]["init_images"] == [INIT]


def test_send_images_false_returns_no_images_but_info(client):
    body = img2img(client, send_images=False).json()
    assert body["images"] == [] and json.loads(body["info"])["all_seeds"] == [1234]


def test_data_url_init_image_and_unknown_fields_are_accepted(client):
    r = img2img(
        client,
        init_images=["data:image/png;base64," + INIT],
        some_extension_field={"x": 1},
        alwayson_scripts={},
        restore_faces=False,
        tiling=False,
        eta=0.3,
        s_churn=0.0,
        seed_resize_from_h=-1,
        image_cfg_scale=1.5,
        styles=["my style"],
    )
    assert r.status_code == 200, r.text
    assert "some_extension_field" not in r.json()["parameters"]
    assert json.loads(r.json()["info"])["styles"] == ["my style"]


def test_sampler_defaults_legacy_index_and_legacy_schedule_names(client):
    body = payload()
    del body["sampler_name"]
    assert json.loads(client.post(f"{V1}/img2img", json=body).json()["info"])["sampler_name"] == "Euler"  # A1111's
    info = json.loads(img2img(client, sampler_name=None, sampler_index="Euler").json()["info"])
    assert info["sampler_name"] == "Euler"
    info = json.loads(img2img(client, sampler_name="DPM++ 2M Karras").json()["info"])
    assert info["sampler_name"] == "DPM++ 2M"
    assert info["extra_generation_params"]["Schedule type"] == "Karras"
    info = json.loads(img2img(client, sampler_name="k_euler", scheduler="exponential").json()["info"])
    assert (
        info["sampler_name"] == "Euler" and info["extra_generation_params"]["Schedule type"] == "Exponential"
    )


def test_several_init_images_form_one_batch_with_seed_plus_i(client):
    other = png_b64(source((20, 90, 200)))
    body = img2img(client, init_images=[INIT, other], batch_size=2, seed=50).json()
    info = json.loads(body["info"])
    assert info["all_seeds"] == [50, 51] and len(body["images"]) == 3  # the grid first
    a, b = (np.asarray(decode(x), "float32") for x in body["images"][1:])
    assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() > 1  # each item kept its own picture
    assert_field_error(img2img(client, init_images=[INIT, other, INIT], batch_size=2), "init_images")


def test_save_images_writes_complete_files_only_when_asked(client, setup):
    outputs = setup["settings"].outputs_dir
    before = set(outputs.rglob("*")) if outputs.exists() else set()
    img2img(client, save_images=False)
    assert (set(outputs.rglob("*")) if outputs.exists() else set()) == before
    body = img2img(client, save_images=True, seed=4321).json()
    new = [p for p in set(outputs.rglob("*.png")) - before]
    assert [p.name.split("-", 1)[1] for p in new] == ["4321.png"]
    assert Image.open(new[0]).info["parameters"] == json.loads(body["info"])["infotexts"][0]
    assert not [p for p in outputs.rglob(".*") if p.is_file()]  # no temp or claim files left behind


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, field",
    [
        ({"sampler_name": "Euler z"}, "sampler_name"),
        ({"sampler_name": None, "sampler_index": "nope"}, "sampler_index"),
        ({"sampler_name": None, "sampler_index": 99}, "sampler_index"),
        ({"scheduler": "sideways"}, "scheduler"),
        ({"steps": 500}, "steps"),
        ({"steps": 0}, "steps"),
        ({"width": 65}, "width"),
        ({"height": 4096}, "height"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"cfg_scale": 0}, "cfg_scale"),
        ({"batch_size": 9}, "batch_size"),
        ({"n_iter": 0}, "n_iter"),
        ({"resize_mode": 7}, "resize_mode"),
        ({"inpainting_fill": 9, "mask": INIT}, "inpainting_fill"),
        ({"inpainting_mask_invert": 3, "mask": INIT}, "inpainting_mask_invert"),
        ({"inpaint_full_res_padding": 999, "mask": INIT}, "inpaint_full_res_padding"),
        ({"mask_blur": 100, "mask": INIT}, "mask_blur"),
        ({"mask_blur_y": -1, "mask": INIT}, "mask_blur_y"),
        ({"subseed_strength": 2}, "subseed_strength"),
        ({"init_images": ["@@@not base64@@@"]}, "init_images[0]"),
        (
            {
                "init_images": [INIT, base64.b64encode(b"just some text, not an image").decode()],
                "batch_size": 2,
            },
            "init_images[1]",
        ),
        ({"init_images": ["http://example.com/cat.png"]}, "init_images[0]"),
        ({"mask": "%%%"}, "mask"),
        ({"mask": base64.b64encode(b"GIF89a-truncated").decode()}, "mask"),
        ({"restore_faces": True}, "restore_faces"),
        ({"tiling": True}, "tiling"),
        ({"alwayson_scripts": {"ControlNet": {"args": []}}}, "alwayson_scripts"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client, changes, field):
    r = img2img(client, **changes)
    assert_field_error(r, field)
    assert r.json().get("field", field) == field


def test_type_errors_are_fastapi_422_naming_the_field(client):
    r = img2img(client, steps="many")
    assert r.status_code == 422
    assert ["body", "steps"] in [e["loc"] for e in r.json()["detail"]]
    r = img2img(client, init_images=[12])
    assert r.status_code == 422 and "init_images" in json.dumps(r.json()["detail"])


@pytest.mark.parametrize("init_images", [None, []])
def test_missing_init_image_is_404_with_a1111_text(client, init_images):
    body = payload()
    if init_images is None:
        del body["init_images"]
    else:
        body["init_images"] = init_images
    r = client.post(f"{V1}/img2img", json=body)
    assert r.status_code == 404 and r.json()["detail"] == "Init image not found"


def test_server_keeps_answering_after_errors(client):
    for _ in range(3):
        assert img2img(client, init_images=["!!"]).status_code == 422
        assert (
            client.post(
                f"{V1}/img2img", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
    assert img2img(client).status_code == 200


# -- lists ----------------------------------------------------------------------------------------------
def test_samplers_and_schedulers(client):
    samplers = client.get(f"{V1}/samplers").json()
    by_name = {s["name"]: s for s in samplers}
    assert {"Euler a", "Euler", "DPM++ 2M", "DDIM", "UniPC"} <= set(by_name)
    assert "k_euler_a" in by_name["Euler a"]["aliases"] and isinstance(by_name["DDIM"]["options"], dict)
    schedulers = client.get(f"{V1}/schedulers").json()
    assert [s["label"] for s in schedulers][:4] == ["Automatic", "Uniform", "Karras", "Exponential"]
    karras = next(s for s in schedulers if s["name"] == "karras")
    assert set(karras) == {"name", "label", "aliases", "default_rho", "need_inner_model"}
    assert karras["default_rho"] == 7.0


def test_upscalers_builtin_plus_provider(client):
    ups = client.get(f"{V1}/upscalers").json()
    assert [u["name"] for u in ups] == ["None", "Lanczos", "Nearest", "R-ESRGAN 4x+"]
    assert set(ups[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert ups[3]["model_path"] == "/m/x4.pth" and ups[3]["scale"] == 4


def test_sd_models_and_sd_vae(client, setup):
    models = client.get(f"{V1}/sd-models").json()
    assert [m["model_name"] for m in models] == ["alpha", "beta"]
    alpha = models[0]
    assert alpha["title"] == f"alpha [{alpha['hash']}]" and len(alpha["hash"]) == 10
    assert alpha["sha256"].startswith(alpha["hash"]) and len(alpha["sha256"]) == 64
    assert alpha["filename"].endswith("alpha.safetensors") and "config" in alpha
    vaes = client.get(f"{V1}/sd-vae").json()
    assert vaes == [
        {
            "model_name": "tiny.vae.safetensors",
            "filename": str((setup["data"] / "models" / "VAE" / "tiny.vae.safetensors").resolve()),
        }
    ]


def test_refresh_checkpoints_and_vae_pick_up_new_files(client, setup):
    folder = setup["data"] / "models" / "Stable-diffusion"
    (folder / "gamma.safetensors").write_bytes((folder / "alpha.safetensors").read_bytes())
    (folder / "gamma.json").write_bytes((folder / "alpha.json").read_bytes())
    vae_folder = setup["data"] / "models" / "VAE"
    (vae_folder / "other.vae.safetensors").write_bytes((vae_folder / "tiny.vae.safetensors").read_bytes())
    try:
        assert client.post(f"{V1}/refresh-checkpoints").status_code == 200
        assert "gamma" in [m["model_name"] for m in client.get(f"{V1}/sd-models").json()]
        assert client.post(f"{V1}/refresh-vae").status_code == 200
        assert "other.vae.safetensors" in [v["model_name"] for v in client.get(f"{V1}/sd-vae").json()]
    finally:
        for path in (
            folder / "gamma.safetensors",
            folder / "gamma.json",
            vae_folder / "other.vae.safetensors",
        ):
            path.unlink()
        client.post(f"{V1}/refresh-checkpoints")


def test_cmd_flags_are_the_settings_without_secrets(setup):
    settings = parse_flags(["--data-dir", str(setup["data"]), "--api-auth", "u:secret", "--medvram"])
    app = build_api_app(settings, setup["models"], setup["engine"], auth=[])
    with LiveServer(app) as server:
        flags = httpx.get(f"{server.url}{V1}/cmd-flags").json()
    assert flags["data_dir"] == str(setup["data"].resolve()) and flags["medvram"] is True
    assert flags["api"] is False and flags["port"] is None and "nowebui" in flags
    assert "secret" not in json.dumps(flags)


def test_scripts_list(client):
    # A1111 lists every img2img script, the always-on ones (Soft Inpainting) too
    assert client.get(f"{V1}/scripts").json() == {"txt2img": [], "img2img": ["loopback", "sd upscale",
                                                                            "soft inpainting"]}


# -- options and override_settings ---------------------------------------------------------------------
def test_options_round_trip_ignores_unknown_keys_with_a_notice(client, titles):
    r = client.post(
        f"{V1}/options", json={"my_extension_setting": [1, 2], "samples_format": "png", "jpeg_quality": 90}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"notices": ["'my_extension_setting' is not an option this server knows; ignored"]}
    options = client.get(f"{V1}/options").json()
    assert "my_extension_setting" not in options and options["jpeg_quality"] == 90  # never stored (issue 10)
    assert options["sd_model_checkpoint"] == titles[0] and options["sd_vae"] == "Automatic"
    assert len(options["sd_checkpoint_hash"]) == 64


def test_options_switch_checkpoint_and_vae(client, titles, setup):
    try:
        assert client.post(f"{V1}/options", json={"sd_model_checkpoint": titles[1]}).status_code == 200
        assert client.get(f"{V1}/options").json()["sd_model_checkpoint"] == titles[1]
        assert json.loads(img2img(client).json()["info"])["sd_model_name"] == "beta"
        # by plain name too, as A1111 accepts
        assert client.post(f"{V1}/options", json={"sd_model_checkpoint": "alpha"}).status_code == 200
        assert client.get(f"{V1}/options").json()["sd_model_checkpoint"] == titles[0]
        assert client.post(f"{V1}/options", json={"sd_vae": "tiny.vae.safetensors"}).status_code == 200
        assert client.get(f"{V1}/options").json()["sd_vae"] == "tiny.vae.safetensors"
        info = json.loads(img2img(client).json()["info"])
        assert info["sd_vae_name"] == "tiny.vae.safetensors" and len(info["sd_vae_hash"]) == 10
    finally:
        client.post(f"{V1}/options", json={"sd_model_checkpoint": titles[0], "sd_vae": "Automatic"})


def test_unknown_checkpoint_or_vae_is_refused_listing_known_ones(client, titles):
    r = client.post(f"{V1}/options", json={"sd_model_checkpoint": "no-such-model [0123456789]", "other": 1})
    assert_field_error(r, "sd_model_checkpoint", 404)
    assert all(t in r.json()["detail"] for t in titles)
    assert "other" not in client.get(f"{V1}/options").json()  # nothing applied from a refused request
    r = client.post(f"{V1}/options", json={"sd_vae": "nope.pt"})
    assert_field_error(r, "sd_vae", 404)
    assert "tiny.vae.safetensors" in r.json()["detail"]
    assert client.get(f"{V1}/options").json()["sd_model_checkpoint"] == titles[0]


def test_override_settings_apply_for_one_request_then_restore(client, titles):
    r = img2img(
        client, override_settings={"sd_model_checkpoint": titles[1], "sd_vae": "tiny.vae.safetensors"}
    )
    info = json.loads(r.json()["info"])
    assert info["sd_model_name"] == "beta" and info["sd_vae_name"] == "tiny.vae.safetensors"
    assert "Model: beta" in info["infotexts"][0]
    options = client.get(f"{V1}/options").json()
    assert options["sd_model_checkpoint"] == titles[0] and options["sd_vae"] == "Automatic"
    try:
        r = img2img(
            client,
            override_settings={"sd_model_checkpoint": "beta"},
            override_settings_restore_afterwards=False,
        )
        assert json.loads(r.json()["info"])["sd_model_name"] == "beta"
        assert client.get(f"{V1}/options").json()["sd_model_checkpoint"] == titles[1]
    finally:
        client.post(f"{V1}/options", json={"sd_model_checkpoint": titles[0]})
    r = img2img(client, override_settings={"sd_model_checkpoint": "missing"})
    assert_field_error(r, "sd_model_checkpoint", 404)


# -- scripts --------------------------------------------------------------------------------------------
def test_script_runs_by_case_insensitive_name(client, setup):
    r = img2img(client, script_name="loopback", script_args=[2, 0.5])
    assert r.status_code == 200, r.text
    assert setup["scripts"].calls[-1] == ("Loopback", [2, 0.5])
    info = json.loads(r.json()["info"])
    assert info["all_seeds"] == [1234, 1235] and info["extra_generation_params"]["Loops"] == 2


def test_unknown_script_and_bad_script_args_are_422(client):
    r = img2img(client, script_name="x/y/z plot", script_args=[])
    assert_field_error(r, "script_name")
    assert "Loopback" in r.json()["detail"] and "SD upscale" in r.json()["detail"]
    assert_field_error(img2img(client, script_name="Loopback", script_args=["only one"]), "script_args")


def test_script_without_a_scripts_object_is_422(setup):
    app = build_api_app(setup["settings"], setup["models"], setup["engine"])
    with LiveServer(app) as server:
        r = httpx.post(f"{server.url}{V1}/img2img", json=payload(script_name="loopback"), timeout=60)
    assert_field_error(r, "script_name")


# -- interrogate ------------------------------------------------------------------------------------------
def test_interrogate_returns_the_caption(client):
    r = client.post(f"{V1}/interrogate", json={"image": INIT, "model": "clip"})
    assert r.status_code == 200 and r.json() == {"caption": "a red square, flat colour"}
    assert_field_error(client.post(f"{V1}/interrogate", json={"image": "???", "model": "clip"}), "image")
    assert client.post(f"{V1}/interrogate", json={"image": INIT, "model": "wd14"}).status_code == 404
    assert client.post(f"{V1}/interrogate", json={"model": "clip"}).status_code == 404


def test_interrogate_errors_and_absence_are_json(setup):
    failing = build_api_app(
        setup["settings"], setup["models"], setup["engine"], interrogator=FakeInterrogator(fail=True)
    )
    absent = build_api_app(setup["settings"], setup["models"], setup["engine"])
    with LiveServer(failing) as a, LiveServer(absent) as b:
        r = httpx.post(f"{a.url}{V1}/interrogate", json={"image": INIT})
        assert r.status_code == 500 and "BLIP weights missing" in r.json()["detail"]
        r = httpx.post(f"{b.url}{V1}/interrogate", json={"image": INIT})
        assert r.status_code == 501 and "not available" in r.json()["detail"]


# -- auth and docs ---------------------------------------------------------------------------------------
def test_basic_auth_guards_every_route(setup):
    settings = parse_flags(["--data-dir", str(setup["data"]), "--api-auth", "alice:s3cr:et,bob:pw"])
    app = build_api_app(settings, setup["models"], setup["engine"])
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        for method, path in (
            ("GET", "/samplers"),
            ("GET", "/progress"),
            ("POST", "/interrupt"),
            ("POST", "/img2img"),
            ("GET", "/options"),
        ):
            r = c.request(method, V1 + path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
        assert c.get(f"{V1}/samplers", auth=("alice", "wrong")).status_code == 401
        assert c.get(f"{V1}/samplers", auth=("mallory", "s3cr:et")).status_code == 401
        assert c.get(f"{V1}/samplers", auth=("alice", "s3cr:et")).status_code == 200
        assert c.get(f"{V1}/samplers", auth=("bob", "pw")).status_code == 200
        r = c.post(f"{V1}/img2img", json=payload(steps=2), auth=("bob", "pw"))
        assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {f"{V1}/img2img", f"{V1}/progress", f"{V1}/options", f"{V1}/png-info"} <= set(spec["paths"])


# -- the project's real collaborators (scripts registry, upscaler list, interrogator) ----------------------
def test_real_scripts_registry_upscalers_and_interrogator(setup):
    from api.scripts import RegistryScripts
    from pipelines.models.interrogate import Interrogator
    from pipelines.models.upscalers import list_upscalers

    settings, engine = setup["settings"], setup["engine"]
    esrgan = settings.models_dir / "ESRGAN"
    esrgan.mkdir(parents=True, exist_ok=True)
    (esrgan / "4x-UltraSharp.pth").write_bytes(b"not loaded by a listing")
    interrogator = Interrogator(settings.models_dir / "BLIP", settings.models_dir / "CLIP")
    app = build_api_app(
        settings,
        setup["models"],
        engine,
        scripts=RegistryScripts(engine, settings.models_dir, interrogator),
        interrogator=interrogator,
        upscalers=lambda: list_upscalers(settings.models_dir),
    )
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        scripts = ["loopback", "outpainting mk2", "poor man's outpainting", "sd upscale", "soft inpainting"]
        assert c.get(f"{V1}/scripts").json()["img2img"] == scripts
        r = c.post(
            f"{V1}/img2img", json=payload(script_name="LOOPBACK", script_args=[2, 0.3, "Linear", "None"])
        )
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        assert len(r.json()["images"]) == 3  # the grid first (as A1111 returns it), then both loops
        assert info["all_seeds"] == [1234, 1234, 1235]
        assert info["extra_generation_params"]["Final denoising strength"] == 0.3
        r = c.post(f"{V1}/img2img", json=payload(script_name="sd upscale", script_args=["", 0, "Lanczos", 2]))
        assert r.status_code == 200, r.text
        assert decode(r.json()["images"][0]).size == (128, 128)
        r = c.post(f"{V1}/img2img", json=payload(script_name="sd upscale", script_args=["", 16, "nope", 2]))
        assert_field_error(r, "script_args")
        assert "Lanczos" in r.json()["detail"]
        assert_field_error(c.post(f"{V1}/img2img", json=payload(script_name="x/y/z plot")), "script_name")

        ups = {u["name"]: u for u in c.get(f"{V1}/upscalers").json()}
        assert list(ups)[:3] == ["None", "Lanczos", "Nearest"]
        ultra = ups["4x-UltraSharp"]
        assert ultra["model_path"].endswith("4x-UltraSharp.pth") and ultra["scale"] == 4

        r = c.post(f"{V1}/interrogate", json={"image": INIT, "model": "clip"})
        assert r.status_code == 500 and "BLIP" in r.json()["detail"]  # says which models are missing
