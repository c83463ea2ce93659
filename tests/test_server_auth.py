"""The whole server behind one auth rule, over real HTTP (app.start: Gradio's server with the API mounted):
each combination of --api-auth / --gradio-auth against a UI route, an API route, /docs and /openapi.json;
the UI's log-in cookie on the API; the log-in throttle; and the start-up checks (busy port, --listen
warning, the models/ folders), plus one-line logs for user errors."""

import dataclasses
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx
import pytest

import app
from api import build_api_app
from api.auth import LoginThrottle
from api.testing import LiveServer
from pipelines.fields import RequestError
from pipelines.launch_flags import MODEL_FOLDERS, parse_flags
from tests.browser import free_port
from ui.generation import user_error

ROOT = Path(__file__).resolve().parent.parent
V1 = "/sdapi/v1"
UI_ROUTES = (("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/queue/join"))
API_ROUTES = (("GET", f"{V1}/samplers"), ("POST", f"{V1}/interrupt"))
DOC_ROUTES = (("GET", "/docs"), ("GET", "/openapi.json"))


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """The engine and models once for the module (each server below builds only its UI around them)."""
    data = tmp_path_factory.mktemp("data")
    parts = app.create_core(parse_flags(["--data-dir", str(data)]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app, "create_core", lambda settings: dataclasses.replace(parts, settings=settings))
        yield parts


@pytest.fixture(scope="module")
def start(core):
    """start(*flags) -> the URL of app.start(settings) on a free port; every server is closed at the end."""
    started = []

    def run(*flags: str) -> str:
        settings = parse_flags(["--data-dir", str(core.settings.data_dir), "--port", str(free_port()), *flags])
        parts, _, url, _ = app.start(settings)
        started.append(parts.blocks)
        return url.rstrip("/")

    yield run
    for blocks in started:
        blocks.close()


def statuses(url, routes, **kwargs):
    with httpx.Client(base_url=url, timeout=60) as c:
        return {path: c.request(method, path, **kwargs).status_code for method, path in routes}


@contextmanager
def login(url, user, password) -> Iterator[httpx.Client]:
    """A client holding the UI's log-in cookie, as a browser after the log-in page."""
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/login", data={"username": user, "password": password})
        assert r.status_code == 200, r.text
        yield client


# 1. Each combination of flags --------------------------------------------------------------------------
def test_without_auth_everything_answers_and_docs_describe_the_api(start):
    url = start("--api")
    assert statuses(url, (("GET", "/config"), *API_ROUTES, *DOC_ROUTES)) == {
        "/config": 200, f"{V1}/samplers": 200, f"{V1}/interrupt": 200, "/docs": 200, "/openapi.json": 200}
    assert httpx.post(f"{url}/gradio_api/call/interrupt", json={"data": []}).status_code == 200  # a real route
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert f"{V1}/img2img" in paths and not [p for p in paths if not p.startswith(V1)]  # no Gradio internals


def test_api_auth_alone_also_locks_the_ui_with_the_same_credentials(start):
    url = start("--api", "--api-auth", "alice:s3cret")
    refused = statuses(url, UI_ROUTES + API_ROUTES + DOC_ROUTES)
    assert set(refused.values()) == {401}, refused
    # the unauthenticated interrupt of the issue: Gradio's routes answer nothing without a log-in
    assert httpx.post(f"{url}/gradio_api/call/interrupt", json={"data": []}).status_code == 401
    assert set(statuses(url, API_ROUTES + DOC_ROUTES, auth=("alice", "s3cret")).values()) == {200}
    with login(url, "alice", "s3cret") as browser:  # the UI's log-in takes the --api-auth credentials
        assert browser.get("/config").status_code == 200


def test_gradio_auth_with_api_locks_the_api_with_the_gradio_credentials(start):
    url = start("--api", "--gradio-auth", "gina:pw1")
    refused = statuses(url, UI_ROUTES + API_ROUTES + DOC_ROUTES)
    assert set(refused.values()) == {401}, refused
    assert httpx.get(f"{url}{V1}/samplers").headers["www-authenticate"].startswith("Basic")
    assert set(statuses(url, API_ROUTES + DOC_ROUTES, auth=("gina", "pw1")).values()) == {200}
    assert statuses(url, API_ROUTES, auth=("gina", "wrong")) == {f"{V1}/samplers": 401, f"{V1}/interrupt": 401}


def test_both_flags_each_front_end_its_own_credentials_and_the_cookie_opens_the_api(start):
    url = start("--api", "--gradio-auth", "gina:pw1", "--api-auth", "alice:s3cret")
    assert set(statuses(url, UI_ROUTES + API_ROUTES + DOC_ROUTES).values()) == {401}
    assert set(statuses(url, API_ROUTES + DOC_ROUTES, auth=("alice", "s3cret")).values()) == {200}
    assert statuses(url, API_ROUTES, auth=("gina", "pw1"))[f"{V1}/samplers"] == 401
    assert httpx.post(f"{url}/login", data={"username": "alice", "password": "s3cret"}).status_code == 400
    with login(url, "gina", "pw1") as browser:  # the UI's log-in cookie is accepted by the API and /docs
        assert browser.get("/config").status_code == 200
        assert browser.get(f"{V1}/samplers").status_code == 200
        assert browser.get("/docs").status_code == 200 and browser.get("/openapi.json").status_code == 200
        assert browser.post(f"{V1}/interrupt", headers={"Origin": url}).status_code == 200
        # ... but not when another site's page sends it along (no cross-site request forgery)
        assert browser.post(f"{V1}/interrupt", headers={"Origin": "http://evil.example"}).status_code == 401
    with httpx.Client(base_url=url, cookies={"access-token-unsecure-x": "forged"}) as forged:
        assert forged.get(f"{V1}/samplers").status_code == 401


def test_gradio_auth_without_api_leaves_no_open_openapi(start):
    url = start("--gradio-auth", "gina:pw1")
    assert statuses(url, (("GET", "/config"), ("GET", "/openapi.json"), ("GET", f"{V1}/samplers"))) == {
        "/config": 401, "/openapi.json": 404, f"{V1}/samplers": 404}


# 2. Throttling ------------------------------------------------------------------------------------------
def test_failed_logins_from_one_client_are_throttled_across_basic_and_the_ui_login(start):
    url = start("--api", "--gradio-auth", "gina:pw1")
    with httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(3):
            assert c.get(f"{V1}/samplers", auth=("gina", "guess")).status_code == 401
        for _ in range(2):
            assert c.post("/login", data={"username": "gina", "password": "guess"}).status_code == 400
        locked = c.get(f"{V1}/samplers", auth=("gina", "pw1"))  # the right password, too late
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert c.post("/login", data={"username": "gina", "password": "pw1"}).status_code == 429
        assert c.get("/config").status_code == 401  # no credentials tried: still just "log in"


def test_api_alone_throttles_basic_auth(core):
    settings = parse_flags(["--data-dir", str(core.settings.data_dir), "--nowebui", "--api-auth", "a:b"])
    with LiveServer(build_api_app(settings, core.models, core.engine)) as server:
        codes = [httpx.get(f"{server.url}{V1}/samplers", auth=("a", "x")).status_code for _ in range(5)]
        assert codes == [401] * 5
        assert httpx.get(f"{server.url}{V1}/samplers", auth=("a", "b")).status_code == 429
        assert httpx.get(f"{server.url}/docs").status_code == 401  # the docs follow the API's auth


def test_throttle_window_and_lockout_expire():
    now = [0.0]
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=30, clock=lambda: now[0])
    for t in (0, 30, 61, 62):  # the failure at 0 leaves the window before the third one
        now[0] = t
        throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == pytest.approx(30)
    assert throttle.retry_after("5.6.7.8") == 0  # other clients are not affected
    now[0] = 93
    assert throttle.retry_after("1.2.3.4") == 0


# 3. Start-up ---------------------------------------------------------------------------------------------
def run_app(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                                            "PATH": "/usr/bin:/bin"})


@pytest.fixture
def busy_port():
    """(host, port) of a socket listening on every interface, as another server would."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("mode", [[], ["--nowebui"], ["--api"]])
def test_a_busy_port_is_named_with_the_flag_that_fixes_it(busy_port, tmp_path, mode):
    done = run_app("--port", str(busy_port), "--data-dir", str(tmp_path), *mode)
    assert done.returncode != 0
    assert f"port {busy_port} is in use: pick another with --port" in done.stderr
    assert "Traceback" not in done.stderr and "GRADIO_SERVER_PORT" not in done.stderr


def test_listen_without_auth_warns_at_start_up(busy_port, tmp_path):
    open_server = run_app("--listen", "--api", "--port", str(busy_port), "--data-dir", str(tmp_path))
    assert "WARNING: --listen without --gradio-auth or --api-auth" in open_server.stderr
    assert "anyone who can reach this machine" in open_server.stderr
    guarded = run_app("--listen", "--api-auth", "a:b", "--port", str(busy_port), "--data-dir", str(tmp_path))
    assert "--listen without" not in guarded.stderr and "is in use" in guarded.stderr


def test_data_dir_gets_the_model_folders(core):
    for name in MODEL_FOLDERS:
        assert (core.settings.data_dir / "models" / name).is_dir(), name
    assert {"Stable-diffusion", "VAE", "ESRGAN", "BLIP", "CLIP"} <= set(MODEL_FOLDERS)


def test_uploads_are_bounded_and_the_cache_swept(core, tmp_path):
    kwargs = app.launch_kwargs(parse_flags(["--data-dir", str(tmp_path), "--max-upload-mb", "20"]))
    assert kwargs["max_file_size"] == 20 * 1024 * 1024
    assert app.launch_kwargs(parse_flags(["--data-dir", str(tmp_path)]))["max_file_size"] == 50 * 1024 * 1024
    blocks = app.create_app(parse_flags(["--data-dir", str(tmp_path)])).blocks
    frequency, age = blocks.delete_cache
    assert 0 < frequency <= 3600 and 0 < age <= 24 * 3600


def test_an_upload_over_the_limit_is_refused(start):
    url = start("--max-upload-mb", "1")
    r = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.png", b"\0" * (2 * 1024 * 1024), "image/png")})
    assert r.status_code == 413, r.text


# 4. One line in the log for a user error, a traceback only for a bug ----------------------------------------
def test_api_user_errors_log_one_line(start, caplog):
    url = start("--api")
    caplog.set_level(logging.INFO)
    r = httpx.post(f"{url}{V1}/options", json={"sd_model_checkpoint": "no-such-model"})
    assert r.status_code == 404
    r = httpx.post(f"{url}{V1}/png-info", json={"image": "not base64 at all!"})
    assert 400 <= r.status_code < 500
    errors = [rec for rec in caplog.records if rec.levelno >= logging.WARNING and rec.name == "api"]
    assert len(errors) == 2, [rec.getMessage() for rec in errors]
    for record in errors:
        assert record.exc_info is None and "\n" not in record.getMessage()
    assert "no-such-model" in errors[0].getMessage()


def test_ui_user_errors_log_one_line_without_a_traceback(caplog):
    caplog.set_level(logging.INFO)
    error = user_error(RequestError("steps", "151 is outside 1..150"))
    assert isinstance(error, gr.Error) and error.print_exception is False  # Gradio prints no traceback
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("WARNING", None)]
    assert "151 is outside 1..150" in caplog.records[0].getMessage()
    caplog.clear()
    bug = user_error(ZeroDivisionError("division by zero"))
    assert bug.print_exception is False  # logged here, with its traceback, once
    assert [r.levelname for r in caplog.records] == ["ERROR"] and caplog.records[0].exc_info
