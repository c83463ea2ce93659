"""/sdapi/v1 loras, embeddings, prompt-styles and their refresh calls, in A1111's shapes; `styles` and LoRA tags
in an img2img request over real HTTP."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
import torch
from network_files import embedding_vectors, write_a1111_embedding, write_kohya_lora
from PIL import Image

from api import build_api_app
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.lora import addnet_hash
from pipelines.models.model_manager import ModelManager

V1 = "/sdapi/v1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    lora_dir = data / "loras-elsewhere"
    write_kohya_lora(lora_dir / "detail.safetensors", output_name="detail_v2")
    write_a1111_embedding(data / "embeddings" / "easyneg.pt", embedding_vectors(2), step=120)
    write_a1111_embedding(data / "embeddings" / "sd15only.pt", torch.zeros(1, 768))
    (data / "styles.csv").write_text("name,prompt,negative_prompt\nFilm,\"film still, {prompt}\",lowres\n")
    settings = parse_flags(["--data-dir", str(data), "--api", "--lora-dir", str(lora_dir)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    app = build_api_app(settings, models, engine)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield client, data, lora_dir


def b64(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_loras_list_and_refresh(setup):
    client, _, lora_dir = setup
    items = client.get(f"{V1}/loras").json()
    assert [(i["name"], i["alias"]) for i in items] == [("detail", "detail_v2")]
    assert items[0]["path"] == str(lora_dir / "detail.safetensors")
    assert items[0]["metadata"]["ss_network_module"] == "networks.lora"
    write_kohya_lora(lora_dir / "new.safetensors", seed=9)
    assert [i["name"] for i in client.get(f"{V1}/loras").json()] == ["detail"]  # until refreshed
    assert client.post(f"{V1}/refresh-loras").status_code == 200
    assert [i["name"] for i in client.get(f"{V1}/loras").json()] == ["detail", "new"]


def test_embeddings_loaded_and_skipped_and_refresh(setup):
    client, data, _ = setup
    body = client.get(f"{V1}/embeddings").json()
    assert body["loaded"] == {"easyneg": {"step": 120, "sd_checkpoint": "abcdef1234", "sd_checkpoint_name": "tiny",
                                          "shape": 32, "vectors": 2}}
    assert body["skipped"]["sd15only"]["shape"] == 768
    write_a1111_embedding(data / "embeddings" / "later.pt", embedding_vectors(1))
    assert client.post(f"{V1}/refresh-embeddings").status_code == 200
    assert "later" in client.get(f"{V1}/embeddings").json()["loaded"]


def test_prompt_styles(setup):
    client, _, _ = setup
    assert client.get(f"{V1}/prompt-styles").json() == [
        {"name": "Film", "prompt": "film still, {prompt}", "negative_prompt": "lowres"}]


def test_img2img_applies_styles_loras_and_embeddings(setup):
    client, _, lora_dir = setup
    rng = np.random.RandomState(0)
    image = b64(Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8"), "RGB"))
    body = {"init_images": [image], "prompt": "a barn <lora:detail_v2:0.6>, <lora:ghost:1>", "negative_prompt":
            "easyneg", "styles": ["Film"], "width": 64, "height": 64, "steps": 3, "seed": 11}
    r = client.post(f"{V1}/img2img", json=body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["styles"] == ["Film"]
    parsed = parse_infotext(info["infotexts"][0])
    assert parsed["Prompt"] == "film still, a barn <lora:detail_v2:0.6>, <lora:ghost:1>"
    assert parsed["Negative prompt"] == "easyneg, lowres"
    assert parsed["Lora hashes"] == f"detail_v2: {addnet_hash(lora_dir / 'detail.safetensors')[:12]}"
    assert parsed["TI hashes"].startswith("easyneg: ")
    assert any("LoRA not found: 'ghost'" in n for n in info["notices"])
    assert not any("styles" in n and "ignored" in n for n in info["notices"])


def test_a_wrong_lora_file_is_a_422_naming_it(setup):
    client, _, lora_dir = setup
    (lora_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    client.post(f"{V1}/refresh-loras")
    rng = np.random.RandomState(0)
    image = b64(Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8"), "RGB"))
    r = client.post(f"{V1}/img2img", json={"init_images": [image], "prompt": "<lora:broken>", "width": 64,
                                            "height": 64, "steps": 2})
    assert r.status_code == 422, r.text
    assert "broken.safetensors" in json.dumps(r.json())
