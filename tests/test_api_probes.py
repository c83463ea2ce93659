"""The /sdapi/v1 routes A1111 clients probe (api/probes.py) over real HTTP, in A1111's shapes; the
--api-server-stop routes; one log line per failed request (api/request_log.py)."""

import base64
import io
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from demo_engine import make_demo_engine
from fastapi import FastAPI
from fastapi.routing import APIRoute
from PIL import Image

from api import build_api_app
from api.errors import json_errors
from api.request_log import logged_route
from api.testing import LiveServer
from pipelines.launch_flags import parse_flags
from scripts import registry
from tests.browser import free_port

ROOT = Path(__file__).resolve().parent.parent
V1 = "/sdapi/v1"
SCRIPT_ARG_KEYS = {"label", "value", "minimum", "maximum", "step", "choices"}  # A1111's ScriptArg
A1111_LATENT_MODES = ["Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                      "Latent (nearest)", "Latent (nearest-exact)"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


@pytest.fixture(scope="module")
def client(engine):
    data = engine.models.settings.data_dir
    app = build_api_app(parse_flags(["--data-dir", str(data)]), engine.models, engine)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def b64_png(size=(64, 64), color=(90, 140, 200)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# 1. Lists ----------------------------------------------------------------------------------------------------
def test_latent_upscale_modes_are_a1111s(client):
    assert client.get(f"{V1}/latent-upscale-modes").json() == [{"name": n} for n in A1111_LATENT_MODES]


@pytest.mark.parametrize("path", ["extensions", "face-restorers", "realesrgan-models", "hypernetworks"])
def test_lists_this_project_has_none_of_are_empty_not_404(client, path):
    response = client.get(f"{V1}/{path}")
    assert response.status_code == 200 and response.json() == []


def test_memory_has_a1111s_ram_and_cuda_figures(client):
    body = client.get(f"{V1}/memory").json()
    assert set(body) == {"ram", "cuda"}
    ram = body["ram"]
    assert set(ram) == {"free", "used", "total"}
    assert 50 * 2**20 < ram["used"] < ram["total"]  # this process's resident memory: the model is in it
    assert ram["free"] == pytest.approx(ram["total"] - ram["used"])
    if torch.cuda.is_available():
        assert set(body["cuda"]) == {"system", "active", "allocated", "reserved", "inactive", "events"}
        assert set(body["cuda"]["events"]) == {"retries", "oom"}
    else:
        assert body["cuda"] == {"error": "unavailable"}  # A1111's answer on a machine without CUDA


def test_script_info_lists_every_script_with_its_script_args(client):
    infos = {i["name"]: i for i in client.get(f"{V1}/script-info").json()}
    assert set(infos) == {t.lower() for t in registry.script_titles()} | {"soft inpainting"}
    for info in infos.values():
        assert info["is_img2img"] is True and info["is_alwayson"] is (info["name"] == "soft inpainting")
        assert all(set(arg) == SCRIPT_ARG_KEYS for arg in info["args"])
    loopback = infos["loopback"]["args"]
    assert loopback[0] == {"label": "Loops", "value": 4, "minimum": 1, "maximum": 32, "step": 1, "choices": None}
    assert loopback[2]["choices"] == ["Aggressive", "Linear", "Lazy"] and loopback[2]["value"] == "Linear"
    upscale = infos["sd upscale"]["args"]
    assert [a["label"] for a in upscale] == ["", "Tile overlap", "Upscaler", "Scale Factor"]
    assert upscale[2]["choices"] == [u["name"] for u in client.get(f"{V1}/upscalers").json()]
    soft = infos["soft inpainting"]["args"]
    assert soft[0] == {**dict.fromkeys(SCRIPT_ARG_KEYS), "label": "Soft inpainting", "value": False}
    assert (soft[1]["label"], soft[1]["step"], soft[3]["maximum"]) == ("Schedule bias", 0.1, 32)
    # the listed values ARE the script_args a client sends: each script parses them to its defaults
    for title in registry.script_titles():
        values = [arg["value"] for arg in infos[title.lower()]["args"]]
        assert registry.parse_script_args(title, values) == registry.parse_script_args(title, None), title


def test_get_options_carries_every_declared_option_with_its_current_value(client, engine):
    from pipelines.options import MODEL, OPTIONS

    values = client.get(f"{V1}/options").json()
    assert {o.key for o in OPTIONS} <= set(values)
    assert values["sd_model_checkpoint"] == engine.models.current.info.title and values["sd_vae"] == "Automatic"
    for option in OPTIONS:
        if option.applies != MODEL and not option.key.startswith("outdir_"):  # folders: this server's own
            assert values[option.key] == option.default, option.key
    changed = {"CLIP_stop_at_last_layers": 2, "jpeg_quality": 70}
    assert client.post(f"{V1}/options", json=changed).status_code == 200
    try:
        assert {k: client.get(f"{V1}/options").json()[k] for k in changed} == changed
    finally:
        client.post(f"{V1}/options", json={"CLIP_stop_at_last_layers": 1, "jpeg_quality": 80})


def test_the_spec_names_a1111s_schemas(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"LatentUpscalerModeItem", "MemoryResponse", "ScriptInfo", "ScriptArg", "ExtensionItem",
            "HypernetworkItem", "FaceRestorerItem", "RealesrganItem"} <= set(schemas)
    assert set(schemas["ScriptArg"]["properties"]) == SCRIPT_ARG_KEYS
    assert set(schemas["ScriptInfo"]["properties"]) == {"name", "is_alwayson", "is_img2img", "args"}
    assert set(schemas["RealesrganItem"]["properties"]) == {"name", "path", "scale"}
    for path in ("unload-checkpoint", "reload-checkpoint"):
        assert "post" in spec["paths"][f"{V1}/{path}"]
    assert f"{V1}/server-stop" not in spec["paths"]  # without --api-server-stop


# 2. Unload / reload ------------------------------------------------------------------------------------------
def test_unload_frees_the_checkpoint_and_the_next_generation_loads_it_again(client, engine):
    models = engine.models
    title = models.current.info.title
    assert client.post(f"{V1}/unload-checkpoint").json() == {}
    assert models._current is None  # the weights are gone
    assert client.get(f"{V1}/options").json()["sd_model_checkpoint"] == title  # reading it does not load it
    assert models._current is None
    answer = client.post(f"{V1}/img2img", json={"init_images": [b64_png()], "steps": 2, "width": 64,
                                                 "height": 64, "seed": 1, "denoising_strength": 0.5})
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).size == (64, 64)
    assert models.current.info.title == title  # loaded again for the generation, as A1111 does

    assert client.post(f"{V1}/unload-checkpoint").status_code == 200 and models._current is None
    assert client.post(f"{V1}/reload-checkpoint").json() == {}
    assert models._current is not None and models.current.info.title == title
    assert client.post(f"{V1}/reload-checkpoint").status_code == 200  # loaded already: nothing to do


# 3. Server control -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["server-stop", "server-restart", "server-kill"])
def test_server_control_is_404_without_the_flag(client, path):
    assert client.post(f"{V1}/{path}").status_code == 404


def test_restart_without_a_launcher_is_501(engine, monkeypatch):
    monkeypatch.delenv("SD_WEBUI_RESTART", raising=False)
    settings = parse_flags(["--data-dir", str(engine.models.settings.data_dir), "--api-server-stop"])
    with LiveServer(build_api_app(settings, engine.models, engine)) as server:
        answer = httpx.post(f"{server.url}{V1}/server-restart", timeout=30)
        assert answer.status_code == 501 and "webui.sh" in answer.json()["detail"]


def start_app(data_dir: Path, *flags: str, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir",
                             str(data_dir), "--api-server-stop", *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                 **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}{V1}/samplers", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"app.py did not start:\n{proc.communicate()[0][-3000:]}")


@pytest.mark.parametrize("flags", [("--nowebui",), ("--api",)], ids=["api-only", "ui-and-api"])
def test_server_stop_shuts_the_server_down_gracefully(tmp_path, flags):
    proc, url = start_app(tmp_path, *flags)
    try:
        answer = httpx.post(f"{url}{V1}/server-stop", timeout=30)
        assert answer.status_code == 200 and answer.text == "Stopping."
        assert proc.wait(timeout=30) == 0  # the process ends by itself, with success
    finally:
        proc.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{V1}/samplers", timeout=5)


def test_server_restart_leaves_webui_sh_its_marker_and_exits(tmp_path):
    marker = tmp_path / "tmp" / "restart"  # webui.sh's SD_WEBUI_RESTART is tmp/restart in the project
    proc, url = start_app(tmp_path / "data", "--nowebui", SD_WEBUI_RESTART=str(marker))
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{url}{V1}/server-restart", timeout=30)
        assert proc.wait(timeout=10) == 0 and marker.is_file()
    finally:
        proc.kill()


# 4. Failed requests are logged ---------------------------------------------------------------------------------
def api_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api"]


def test_a_422_is_logged_on_one_line_with_method_route_and_reason(client, caplog):
    caplog.set_level(logging.INFO, logger="api")
    assert client.post(f"{V1}/img2img", json={"init_images": [b64_png()], "steps": "many"}).status_code == 422
    [record] = api_lines(caplog)
    line = record.getMessage()
    assert record.levelno == logging.WARNING and record.exc_info is None and "\n" not in line
    assert line.startswith(f"API 422 POST {V1}/img2img: ") and "steps" in line and "integer" in line
    caplog.clear()
    assert client.post(f"{V1}/img2img", json={"init_images": [b64_png()], "sampler_name": "Nope"}).status_code \
        == 422  # the engine's own check (an ApiError/RequestError body), logged the same way
    [record] = api_lines(caplog)
    assert record.getMessage().startswith(f"API 422 POST {V1}/img2img: ") and "Nope" in record.getMessage()


def test_a_wrong_password_is_one_line_too(engine, caplog):
    settings = parse_flags(["--data-dir", str(engine.models.settings.data_dir), "--api-auth", "ann:pw"])
    caplog.set_level(logging.INFO)
    with LiveServer(build_api_app(settings, engine.models, engine)) as server:
        assert httpx.get(f"{server.url}{V1}/memory", auth=("ann", "guess")).status_code == 401
        assert httpx.get(f"{server.url}{V1}/memory", auth=("ann", "pw")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"API: wrong credentials for user 'ann' from 127.0.0.1 (GET {V1}/memory)"]


def test_a_500_logs_its_stack_trace_and_one_summary_line(caplog):
    def broken() -> dict:
        raise ZeroDivisionError("a bug")

    app = FastAPI()
    app.router.add_api_route("/sdapi/v1/broken", json_errors(broken), methods=["GET"],
                             route_class_override=logged_route(APIRoute))
    caplog.set_level(logging.INFO, logger="api")
    with LiveServer(app) as server:
        assert httpx.get(f"{server.url}/sdapi/v1/broken").status_code == 500
    traced, summary = api_lines(caplog)
    assert traced.exc_info is not None and traced.exc_info[0] is ZeroDivisionError
    assert summary.exc_info is None and summary.levelno == logging.ERROR
    assert summary.getMessage() == "API 500 GET /sdapi/v1/broken: ZeroDivisionError: a bug"
