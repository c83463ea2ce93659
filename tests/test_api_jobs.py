"""The API under load, over real HTTP: queued concurrent jobs, /progress while a job runs, interrupt and
skip from another connection, and inpainting through A1111's mask fields."""

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from api import build_api_app
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.launch_flags import parse_flags
from pipelines.models.model_manager import ModelManager

V1 = "/sdapi/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = parse_flags(["--data-dir", str(tmp_path_factory.mktemp("data"))])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)  # the embedded demo model
    engine = Engine(models, settings.outputs_dir, preview_every=1)
    with LiveServer(build_api_app(settings, models, engine)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def picture() -> Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([x * 4, y * 4, 255 - x * 2], axis=-1)
    return Image.fromarray(rgb.astype("uint8"), "RGB")


INIT = b64(picture())


def payload(**changes):
    body = {
        "init_images": [INIT],
        "prompt": "a house",
        "width": 64,
        "height": 64,
        "steps": 2,
        "denoising_strength": 0.5,
        "seed": 1,
        "sampler_name": "Euler",
    }
    body.update(changes)
    return body


def start_job(url, body):
    """POST img2img on its own connection in a thread; returns (thread, holder) with holder["response"]."""
    holder = {}

    def run():
        with httpx.Client(base_url=url, timeout=300) as c:
            holder["response"] = c.post(f"{V1}/img2img", json=body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, holder


def wait_until_sampling(client, timeout=60.0) -> dict:
    """Poll /progress until the job reports a finished step; every poll must answer within a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.monotonic()
        r = client.get(f"{V1}/progress")
        assert time.monotonic() - started < 1.0, "GET /progress blocked behind the running job"
        progress = r.json()
        if progress["state"]["sampling_step"] > 0:
            return progress
        time.sleep(0.02)
    raise AssertionError("the job never reported progress")


def test_ten_concurrent_requests_all_succeed_with_their_seeds(server):
    results = {}

    def one(i):
        with httpx.Client(base_url=server.url, timeout=300) as c:
            results[i] = c.post(f"{V1}/img2img", json=payload(seed=1000 + 10 * i, batch_size=1 + i % 2))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(results) == list(range(10))
    for i, r in results.items():
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        expected = [1000 + 10 * i + k for k in range(1 + i % 2)]
        first = info["index_of_first_image"]  # a batch of 2 has A1111's grid first
        assert info["all_seeds"] == expected and len(r.json()["images"]) == len(expected) + first
        assert [f"Seed: {s}," in t for s, t in zip(expected, info["infotexts"][first:])] == [True] * len(expected)


def test_progress_answers_at_once_while_a_job_runs_and_interrupt_stops_it(server, client):
    idle = client.get(f"{V1}/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None

    thread, holder = start_job(server.url, payload(n_iter=100, steps=5, denoising_strength=0.8, seed=5))
    started = time.monotonic()
    try:
        progress = wait_until_sampling(client)
        assert progress["state"]["job"] == "img2img" and progress["state"]["job_count"] == 100  # A1111's most
        # A1111 runs t_enc + 1 = int(0.8 * 5) + 1 steps
        assert progress["state"]["sampling_steps"] == 5 and 0 < progress["progress"] < 1
        assert progress["eta_relative"] >= 0
        preview = Image.open(io.BytesIO(base64.b64decode(progress["current_image"])))
        assert preview.format == "PNG"
        assert (
            client.get(f"{V1}/progress", params={"skip_current_image": True}).json()["current_image"] is None
        )
    finally:
        assert client.post(f"{V1}/interrupt").status_code == 200  # from another connection
    thread.join(timeout=60)
    assert not thread.is_alive(), "the interrupted job did not stop"
    assert time.monotonic() - started < 60
    response = holder["response"]
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["interrupted"] is True and len(info["all_seeds"]) < 100
    assert info["all_seeds"] == list(range(5, 5 + len(info["all_seeds"])))  # finished images are kept
    after = client.get(f"{V1}/progress").json()
    assert after["state"]["interrupted"] is True and after["state"]["job_count"] == 0


def test_skip_drops_only_the_current_batch(server, client):
    thread, holder = start_job(server.url, payload(n_iter=3, steps=10, denoising_strength=1.0, seed=40))
    try:
        progress = wait_until_sampling(client)
        assert progress["state"]["job_no"] == 0
    finally:
        assert client.post(f"{V1}/skip").status_code == 200
    thread.join(timeout=120)
    info = json.loads(holder["response"].json()["info"])
    # One batch dropped (normally the first; the second if batch 0 finished before the skip landed).
    assert info["all_seeds"] in ([41, 42], [40, 42]) and info["interrupted"] is False
    assert client.get(f"{V1}/progress").json()["state"]["skipped"] is True


def test_interrupt_and_skip_when_idle_are_harmless(client):
    assert client.post(f"{V1}/interrupt").json() == {}
    assert client.post(f"{V1}/skip").status_code == 200
    r = client.post(f"{V1}/img2img", json=payload(seed=9))
    assert r.status_code == 200 and json.loads(r.json()["info"])["all_seeds"] == [9]  # a new job starts clean


def _mask_left_half() -> str:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    return b64(mask)


def test_inpaint_keeps_the_unmasked_pixels_and_records_the_mask_settings(client):
    body = payload(
        mask=_mask_left_half(),
        mask_blur=0,
        inpainting_fill=1,
        inpaint_full_res=False,
        denoising_strength=1.0,
        steps=3,
        seed=11,
    )
    r = client.post(f"{V1}/img2img", json=body)
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB"), "int16")
    source = np.asarray(picture(), "int16")
    assert np.abs(out[:, 40:] - source[:, 40:]).max() <= 2  # unmasked right side composited back
    assert np.abs(out[:, :24] - source[:, :24]).mean() > 10  # masked left side was redrawn
    info = json.loads(r.json()["info"])
    assert "Mask blur: 0" in info["infotexts"][0] and "Inpaint area" not in info["infotexts"][0]
    assert info["is_using_inpainting_conditioning"] is False  # a 4-channel model blends instead


def test_rgba_mask_over_http_is_its_alpha_with_opaque_as_inpaint(client):
    """A1111's create_binary_mask: a mask with transparency is its alpha, opaque (> 128) = inpaint; here the
    opaque strokes are black, so reading the RGB instead would inpaint the other half."""
    strokes = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    strokes.paste((0, 0, 0, 255), (0, 0, 32, 64))
    common = dict(mask_blur=0, inpainting_fill=1, inpaint_full_res=False, denoising_strength=1.0, steps=3, seed=11)
    by_alpha = client.post(f"{V1}/img2img", json=payload(mask=b64(strokes), **common))
    by_grey = client.post(f"{V1}/img2img", json=payload(mask=_mask_left_half(), **common))
    assert by_alpha.status_code == 200 and by_grey.status_code == 200, by_alpha.text
    assert by_alpha.json()["images"][0] == by_grey.json()["images"][0]


def test_inpaint_api_defaults_are_fill_and_only_masked(client):
    r = client.post(f"{V1}/img2img", json=payload(mask=_mask_left_half(), inpainting_mask_invert=1, seed=12))
    assert r.status_code == 200, r.text
    params = json.loads(r.json()["info"])["extra_generation_params"]
    assert params["Masked content"] == "fill" and params["Inpaint area"] == "Only masked"
    assert params["Masked area padding"] == 0 and params["Mask blur"] == 4
    assert params["Mask mode"] == "Inpaint not masked"
