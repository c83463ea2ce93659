"""Bounded requests over real HTTP (issue 10): the body size, prompts, image sizes and counts, job sizes, seeds,
script_args before queueing, options, a full disk, and a job cancelled when its client leaves."""

import base64
import errno
import io
import json
import os
import socket
import threading
import time

import httpx
import psutil
import pytest
from PIL import Image

from api import build_api_app
from api.scripts import RegistryScripts
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.generation.queue import JobState
from pipelines.io import outputs
from pipelines.launch_flags import parse_flags
from pipelines.models.model_manager import ModelManager

V1 = "/sdapi/v1"


def _serve(data_dir, *flags):
    settings = parse_flags(["--data-dir", str(data_dir), *flags])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)  # the embedded demo model
    engine = Engine(models, settings.outputs_dir, preview_every=1)
    app = build_api_app(settings, models, engine, scripts=RegistryScripts(engine, settings.models_dir))
    return engine, LiveServer(app)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine, live = _serve(tmp_path_factory.mktemp("data"))
    with live, httpx.Client(base_url=live.url, timeout=30) as client:
        yield {"engine": engine, "client": client, "url": live.url, "port": live.port}


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """Small limits, so that every bound is reached with tiny pictures."""
    engine, live = _serve(tmp_path_factory.mktemp("tight"), "--api-max-body-mb", "1", "--max-image-pixels", "5000",
                          "--max-request-pixels", "8000", "--max-output-pixels", "50000",
                          "--max-job-pixels", "40000")
    with live, httpx.Client(base_url=live.url, timeout=30) as client:
        yield {"engine": engine, "client": client}


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


INIT = b64(Image.new("RGB", (64, 64), (200, 60, 30)))


def payload(**changes):
    body = {"init_images": [INIT], "prompt": "a house", "width": 64, "height": 64, "steps": 2,
            "denoising_strength": 0.5, "seed": 1, "sampler_name": "Euler"}
    body.update(changes)
    return body


def assert_field_error(r, field, *words):
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()
    for word in words:
        assert word in r.json()["detail"], r.json()["detail"]


class PeakRss:
    """The process's peak RSS above its level at the start, sampled every few milliseconds."""

    def __init__(self):
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def growth_mb(self):
        return (self.peak - self.base) / 2**20


# -- the unbounded prompt (critical) ----------------------------------------------------------------------
def test_a_5_mb_prompt_is_refused_quickly_with_bounded_memory(server):
    body = json.dumps(payload(prompt="a house, " * 580_000))  # 5.2 MB (1 MB took 18 s and +0.6 GB before)
    with PeakRss() as rss:
        started = time.monotonic()
        r = server["client"].post(f"{V1}/img2img", content=body, headers={"content-type": "application/json"})
        elapsed = time.monotonic() - started
    assert_field_error(r, "prompt", "characters", "32768")
    assert elapsed < 5, elapsed
    assert rss.growth_mb < 200, rss.growth_mb


def test_a_prompt_over_the_token_limit_is_refused_before_queueing(server):
    r = server["client"].post(f"{V1}/img2img", json=payload(negative_prompt="red, " * 1000))  # 2000 tokens
    assert_field_error(r, "negative_prompt", "tokens", "1500")


def test_a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared(tight):
    client = tight["client"]
    body = json.dumps(payload(prompt="x" * 1_200_000)).encode()  # 1.2 MB > --api-max-body-mb 1
    r = client.post(f"{V1}/img2img", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--api-max-body-mb" in r.json()["detail"]

    def chunks():  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = client.post(f"{V1}/img2img", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post(f"{V1}/img2img", json=payload(n_iter=1)).status_code == 200  # a normal body passes


# -- images: declared sizes and counts before decoding ---------------------------------------------------
def test_an_image_declaring_more_pixels_than_allowed_is_refused_before_decoding(server):
    big = Image.new("1", (5000, 5000))  # 25 MP declared (> 16.8 MP), 3 KB as a PNG
    with PeakRss() as rss:
        r = server["client"].post(f"{V1}/img2img", json=payload(init_images=[b64(big)]))
    assert_field_error(r, "init_images[0]", "5000x5000", "--max-image-pixels")
    assert rss.growth_mb < 50, rss.growth_mb  # decoded as RGB the picture alone is 75 MB


def test_the_image_count_is_checked_before_any_image_is_decoded(server):
    r = server["client"].post(f"{V1}/img2img", json=payload(init_images=[INIT, INIT, "???"], batch_size=2))
    assert_field_error(r, "init_images", "3 images but batch_size is 2")


def test_the_request_pixel_budget_counts_every_image(tight):
    r = tight["client"].post(f"{V1}/img2img", json=payload(init_images=[INIT, INIT], batch_size=2))
    assert_field_error(r, "init_images[1]", "per request", "--max-request-pixels")
    r = tight["client"].post(f"{V1}/png-info", json={"image": b64(Image.new("RGB", (100, 100)))})
    assert_field_error(r, "image", "--max-image-pixels")


# -- job size ---------------------------------------------------------------------------------------------
def test_batch_count_and_size_are_capped_as_in_a1111(server):
    assert_field_error(server["client"].post(f"{V1}/img2img", json=payload(n_iter=101)), "n_iter", "1..100")
    assert_field_error(server["client"].post(f"{V1}/img2img", json=payload(batch_size=9)), "batch_size")


def test_the_pixels_a_job_produces_are_capped(tight):
    r = tight["client"].post(f"{V1}/img2img", json=payload(n_iter=10))  # 10 x 64x64 = 40960 > 40000
    assert_field_error(r, "n_iter", "--max-job-pixels")
    r = tight["client"].post(f"{V1}/img2img", json=payload(script_name="SD upscale",
                                                          script_args=["", 16, "Lanczos", 4]))  # 256x256 out
    assert_field_error(r, "script_args", "256x256", "--max-output-pixels")


def test_a_job_whose_client_disconnects_is_interrupted(server):
    engine = server["engine"]
    sock = _post_raw(server["port"], payload(n_iter=100, steps=50))  # minutes of work on the demo model
    deadline = time.monotonic() + 30
    while (engine.queue.running is None or engine.queue.running.update is None) and time.monotonic() < deadline:
        time.sleep(0.01)
    job = engine.queue.running
    assert job is not None and job.update is not None, "the job never started sampling"
    sock.close()
    deadline = time.monotonic() + 10
    while job.state is JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.state is JobState.INTERRUPTED
    assert job.update.job < 99  # stopped early, not after its 100 batches


def test_a_queued_job_whose_client_disconnects_never_runs(server):
    engine, release = server["engine"], hold_the_queue(server["engine"])
    try:
        sock = _post_raw(server["port"], payload())
        job = _wait_for(lambda: engine.queue.waiting[0] if engine.queue.waiting else None)
        sock.close()
        assert _wait_for(lambda: job.control.interrupted), "the disconnect was not noticed"
    finally:
        release.set()
    assert _wait_for(lambda: job.state is JobState.FAILED and "closed the connection" in job.error), job.error


def hold_the_queue(engine) -> threading.Event:
    """Keep the job queue busy with a job of its own until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with engine.queue.hold("test"):
            held.set()
            release.wait(30)

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(10)
    return release


def _post_raw(port, body):
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /sdapi/v1/img2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    return None


# -- minor ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("seed", 2**64), ("seed", 2**32), ("subseed", 2**64 + 5)])
def test_out_of_range_seeds_are_422(server, field, value):
    r = server["client"].post(f"{V1}/img2img", json=payload(**{field: value}))
    assert_field_error(r, field, "4294967295")


def test_a_lone_surrogate_in_the_prompt_is_422(server):
    body = json.dumps(payload(prompt="a \ud800 house"))  # ASCII JSON with the escape \ud800
    r = server["client"].post(f"{V1}/img2img", content=body, headers={"content-type": "application/json"})
    assert_field_error(r, "prompt", "surrogate")


def test_script_args_are_checked_before_waiting_in_the_queue(server):
    release = hold_the_queue(server["engine"])
    try:
        r = server["client"].post(f"{V1}/img2img", json=payload(script_name="Loopback", script_args=["many"]),
                                  timeout=5)
        assert_field_error(r, "script_args", "loops")
    finally:
        release.set()


def test_options_keep_only_known_keys_and_bound_their_values(server):
    client = server["client"]
    r = client.post(f"{V1}/options", json={"junk_key": "x" * 1000, "jpeg_quality": 91})
    assert r.status_code == 200, r.text
    assert any("junk_key" in notice for notice in r.json()["notices"])
    options = client.get(f"{V1}/options").json()
    assert "junk_key" not in options and options["jpeg_quality"] == 91
    r = client.post(f"{V1}/options", json={"outdir_img2img_samples": "x" * 5000})
    assert_field_error(r, "outdir_img2img_samples", "4096")


def test_a_full_disk_returns_the_images_with_a_notice(server, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "_encode", disk_full)
    r = server["client"].post(f"{V1}/img2img", json=payload(save_images=True, batch_size=2))
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 3  # the grid (not saved either) and the 2 images
    notices = json.loads(r.json()["info"])["notices"]
    assert any("saving failed" in n and "disk is full" in n for n in notices), notices
