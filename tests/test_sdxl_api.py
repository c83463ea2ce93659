"""SDXL over real HTTP: /sdapi/v1/sd-models names each file's family, img2img runs on an SDXL file, and
override_settings switches between an SD 1.x and an SDXL checkpoint for one request and back; a VAE or LoRA
that does not fit the loaded family is refused naming it."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from ldm_export import write_checkpoint, write_vae
from network_files import write_kohya_lora
from pictures import blocky_picture
from PIL import Image
from sdxl_export import write_tiny_sdxl

from api import build_api_app
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.launch_flags import parse_flags
from pipelines.models.demo_model import build_demo_components
from pipelines.models.model_manager import ModelManager

V1 = "/sdapi/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("xl-api")
    checkpoints, vaes, loras = (data / "models" / name for name in ("Stable-diffusion", "VAE", "Lora"))
    for folder in (checkpoints, vaes, loras):
        folder.mkdir(parents=True)
    demo = build_demo_components()
    write_checkpoint(demo, checkpoints / "a-sd15.safetensors")
    write_checkpoint(demo, checkpoints / "c-sd15-pickle.ckpt")
    write_tiny_sdxl(checkpoints / "b-xl.safetensors")
    write_vae(demo.vae, vaes / "xl-fp16-fix.safetensors")  # same VAE architecture as SDXL's; no scale in it
    write_kohya_lora(loras / "sd15-style.safetensors")
    settings = parse_flags(["--data-dir", str(data), "--api"])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    app = build_api_app(settings, models, engine)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=300) as client:
        yield client, models


def _img2img(client, **changes):
    buffer = io.BytesIO()
    blocky_picture(64, 64).save(buffer, format="PNG")
    body = {"init_images": [base64.b64encode(buffer.getvalue()).decode()], "prompt": "a red barn", "width": 64,
            "height": 64, "steps": 3, "denoising_strength": 0.5, "seed": 5, "sampler_name": "Euler"}
    body.update(changes)
    return client.post(f"{V1}/img2img", json=body)


def test_sd_models_lists_each_family(server):
    client, _ = server
    entries = {e["model_name"]: e for e in client.get(f"{V1}/sd-models").json()}
    assert entries["a-sd15"]["family"] == "sd1" and entries["b-xl"]["family"] == "sdxl"
    assert entries["c-sd15-pickle"]["family"] is None  # a pickle not loaded: not read just to list it
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(entries["b-xl"])


def test_override_settings_switch_to_sdxl_for_one_request_and_back(server):
    client, models = server
    assert models.current.info.name == "a-sd15"
    r = _img2img(client, override_settings={"sd_model_checkpoint": "b-xl"})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["sd_model_name"] == "b-xl" and "Model: b-xl" in info["infotexts"][0]
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert image.size == (64, 64)
    assert client.get(f"{V1}/options").json()["sd_model_checkpoint"].startswith("a-sd15")
    r = _img2img(client)  # and SD 1.x again, on the same server
    assert r.status_code == 200 and json.loads(r.json()["info"])["sd_model_name"] == "a-sd15"


def test_vae_file_takes_the_sdxl_scale_and_sd_lora_is_refused_naming_sdxl(server):
    client, models = server
    try:
        r = client.post(f"{V1}/options", json={"sd_model_checkpoint": "b-xl", "sd_vae": "xl-fp16-fix.safetensors"})
        assert r.status_code == 200, r.text
        assert models.current.components.vae.config.scaling_factor == pytest.approx(0.13025)
        assert "(SDXL" in models.status_line()
        r = _img2img(client, prompt="a red barn <lora:sd15-style:1>")
        assert r.status_code >= 400
        assert "not for the loaded SDXL model" in r.text and "sd15-style" in r.text
    finally:
        client.post(f"{V1}/options", json={"sd_model_checkpoint": "a-sd15", "sd_vae": "Automatic"})
