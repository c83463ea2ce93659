"""Both front ends on one job queue, over real HTTP with two tiny checkpoints (alpha, beta): a web-UI
checkpoint switch waits for a running API job; an API override + run + restore is one job; /skip and
/interrupt reach only the running job, never an API job waiting behind it. Jobs are held at exact
points by blocking their progress callbacks, so nothing here depends on timing."""

import base64
import io
import json
import threading
import time

import gradio as gr
import httpx
import pytest
from PIL import Image

from api import build_api_app
from api.testing import LiveServer
from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.generation.progress import JobControl
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.demo_model import build_demo_components
from pipelines.models.model_manager import ModelManager
from tests.ldm_export import write_checkpoint
from ui.top_bar import build_top_bar

V1 = "/sdapi/v1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    demo = build_demo_components()
    for name in ("alpha", "beta"):
        write_checkpoint(demo, data / "models" / "Stable-diffusion" / f"{name}.safetensors")
    settings = parse_flags(["--data-dir", str(data)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    assert models.current.info.name == "alpha"
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    app = build_api_app(settings, models, engine)
    with gr.Blocks() as blocks:  # the web UI's checkpoint dropdown, wired as the app wires it
        build_top_bar(models, engine.queue)
    handlers = {fn.name: fn.fn for fn in blocks.fns.values()}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield {"engine": engine, "models": models, "api": app.state.sdapi, "client": client,
               "url": server.url, "load_checkpoint": handlers["load_checkpoint"]}
    assert models.current.info.name == "alpha"


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


class Gate:
    """Wraps a progress callback: the first report blocks (the job holds the queue) until open()."""

    def __init__(self, report=None):
        self.report, self.reached, self.opened = report, threading.Event(), threading.Event()

    def __call__(self, update):
        if self.report is not None:
            self.report(update)
        if not self.reached.is_set():
            self.reached.set()
            assert self.opened.wait(60)

    def open(self):
        self.opened.set()


def in_thread(func, *args):
    holder = {}
    thread = threading.Thread(target=lambda: holder.setdefault("value", func(*args)), daemon=True)
    thread.start()
    return thread, holder


def init_b64():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def api_job(env, **changes):
    body = {"init_images": [init_b64()], "prompt": "a boat", "width": 64, "height": 64, "steps": 2,
            "denoising_strength": 0.5, "seed": 10, "sampler_name": "Euler"} | changes

    def post():
        with httpx.Client(base_url=env["url"], timeout=300) as c:
            return c.post(f"{V1}/img2img", json=body)
    return in_thread(post)


def info_of(holder):
    response = holder["value"]
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])


def ui_job(env, gate, control=None, **changes):
    """A web-UI-path run (engine.img2img from a worker thread, as ui/generation.run_in_thread does)."""
    base = dict(init_image=Image.new("RGB", (64, 64), (30, 160, 90)), prompt="a tree", width=64, height=64,
                steps=6, denoising_strength=1.0, seed=300, n_iter=2, save_images=False)
    return in_thread(env["engine"].img2img, Img2ImgRequest(**(base | changes)), gate, control)


def gate_api(env, monkeypatch):
    gate = Gate(env["api"].tracker.report)
    monkeypatch.setattr(env["api"].tracker, "report", gate)
    return gate


def test_ui_checkpoint_switch_waits_for_the_running_api_job(env, monkeypatch):
    queue, models = env["engine"].queue, env["models"]
    gate = gate_api(env, monkeypatch)
    api_thread, api_holder = api_job(env)
    assert gate.reached.wait(60)  # the API job is sampling on alpha, and holds the queue
    switch, _ = in_thread(env["load_checkpoint"], "beta")
    try:
        wait_until(lambda: [job.kind for job in queue.waiting] == ["switch"])
        assert models.current.info.name == "alpha" and switch.is_alive()  # not loaded beside the running job
    finally:
        gate.open()
    api_thread.join(120)
    switch.join(120)
    info = info_of(api_holder)
    assert info["sd_model_name"] == "alpha" and parse_infotext(info["infotexts"][0])["Model"] == "alpha"
    assert models.current.info.name == "beta"  # the switch ran, after the job
    env["load_checkpoint"]("alpha")


def test_api_override_switch_run_and_restore_are_one_job(env, monkeypatch):
    queue, models = env["engine"].queue, env["models"]
    gate = gate_api(env, monkeypatch)
    api_thread, api_holder = api_job(env, override_settings={"sd_model_checkpoint": "beta"})
    assert gate.reached.wait(60)
    assert models.current.info.name == "beta" and queue.running.kind == "img2img"
    other, other_holder = ui_job(env, None, n_iter=1)  # submitted while the override is in force
    try:
        wait_until(lambda: len(queue.waiting) == 1)
    finally:
        gate.open()
    api_thread.join(120)
    other.join(120)
    assert info_of(api_holder)["sd_model_name"] == "beta"
    # It ran after the restore, not on the overridden model.
    assert parse_infotext(other_holder["value"].infotexts[0])["Model"] == "alpha"
    assert models.current.info.name == "alpha"


@pytest.mark.parametrize("press", ["skip", "interrupt"])
def test_skip_and_interrupt_reach_the_running_job_not_a_queued_api_job(env, press):
    queue, client = env["engine"].queue, env["client"]
    gate, control = Gate(), JobControl()
    ui_thread, ui_holder = ui_job(env, gate, control)
    assert gate.reached.wait(60)  # the UI job is in batch 0, step 1
    api_thread, api_holder = api_job(env, n_iter=2, seed=70)
    try:
        wait_until(lambda: len(queue.waiting) == 1)
        progress = client.get(f"{V1}/progress").json()  # the queue's running job: the UI's
        assert progress["state"]["job"] == "img2img" and progress["state"]["sampling_step"] == 1
        assert progress["state"]["job_count"] == 2
        assert client.post(f"{V1}/{press}").status_code == 200
    finally:
        gate.open()
    ui_thread.join(120)
    api_thread.join(120)
    ui_result, info = ui_holder["value"], info_of(api_holder)
    if press == "skip":
        assert ui_result.seeds == [301] and ui_result.skipped_batches == 1
    else:
        assert ui_result.interrupted and ui_result.seeds == [300]  # the unfinished batch, as it stands
    assert info["all_seeds"] == [70, 71] and info["interrupted"] is False  # the queued job: untouched
