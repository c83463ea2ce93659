"""CORS (api/cors.py): --cors-allow-origins / --cors-allow-origins-regex as A1111, on the API alone
(--nowebui) and on the UI+API server, where Gradio's own policy (which answers foreign origins) is replaced."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import gradio as gr
import httpx
import pytest

import app
from api import build_api_app
from api.cors import install_cors
from api.testing import LiveServer
from pipelines.launch_flags import parse_flags
from tests.browser import free_port

ROOT = Path(__file__).resolve().parent.parent
V1 = "/sdapi/v1"
ALLOWED = "http://localhost:5173"
BY_REGEX = "https://canvas-42.example.org"
REGEX = r"https://canvas-\d+\.example\.org"
FOREIGN = "http://evil.example"
CORS_FLAGS = ("--cors-allow-origins", f"{ALLOWED},http://other.example", "--cors-allow-origins-regex", REGEX)


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    parts = app.create_core(parse_flags(["--data-dir", str(tmp_path_factory.mktemp("data"))]))
    with pytest.MonkeyPatch.context() as patch:  # every server below shares these models
        patch.setattr(app, "create_core", lambda settings: dataclasses.replace(parts, settings=settings))
        yield parts


@pytest.fixture(scope="module")
def api_only(core):
    """url(*flags) of a --nowebui server (build_api_app, as app.serve_api_only serves it)."""
    servers = []

    def url(*flags: str) -> str:
        settings = parse_flags(["--data-dir", str(core.settings.data_dir), "--nowebui", *flags])
        server = LiveServer(build_api_app(settings, core.models, core.engine)).start()
        servers.append(server)
        return server.url

    yield url
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def ui_and_api(core):
    """url(*flags) of app.start(settings) with --api: the UI+API server main() runs."""
    started = []

    def url(*flags: str) -> str:
        settings = parse_flags(["--data-dir", str(core.settings.data_dir), "--port", str(free_port()), "--api",
                                *flags])
        parts, _, local_url, _ = app.start(settings)
        started.append(parts.blocks)
        return local_url.rstrip("/")

    yield url
    for blocks in started:
        blocks.close()


def preflight(url: str, origin: str, path: str = f"{V1}/img2img", **headers: str) -> httpx.Response:
    return httpx.options(f"{url}{path}", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "content-type", **headers})


def allowed_origin(url: str, origin: str, path: str = f"{V1}/samplers", **headers: str) -> str | None:
    """The Access-Control-Allow-Origin a simple GET from `origin` gets (None: the browser hides the answer)."""
    response = httpx.get(f"{url}{path}", headers={"Origin": origin, **headers}, timeout=60)
    assert response.status_code == 200
    return response.headers.get("access-control-allow-origin")


def check_policy_with_flags(url: str) -> None:
    for origin in (ALLOWED, BY_REGEX):
        answer = preflight(url, origin)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "content-type" in answer.headers["access-control-allow-headers"].lower()
        assert allowed_origin(url, origin) == origin
    for origin in (FOREIGN, "https://canvas-42.example.org.evil.example", "http://localhost:5174"):
        refused = preflight(url, origin)
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        assert allowed_origin(url, origin) is None


def check_no_foreign_origin(url: str) -> None:
    host = url.split("//")[1]
    for origin in (FOREIGN, ALLOWED, "http://localhost:9999", "null"):
        assert preflight(url, origin).status_code == 400
        assert allowed_origin(url, origin) is None
        # reached by another name (as with --listen): still nothing for a foreign page
        assert allowed_origin(url, origin, **{"Host": "studio.lan"}) is None
    assert httpx.get(f"{url}{V1}/samplers", headers={"Origin": f"http://{host}"}).status_code == 200  # own page


# 1. API alone (--nowebui) -------------------------------------------------------------------------------------
def test_api_only_allows_the_flags_origins(api_only):
    check_policy_with_flags(api_only(*CORS_FLAGS))


def test_api_only_without_flags_allows_no_foreign_origin(api_only):
    check_no_foreign_origin(api_only())


# 2. UI + API (Gradio's app) ----------------------------------------------------------------------------------
def test_ui_server_allows_the_flags_origins_on_the_api_and_the_ui(ui_and_api):
    url = ui_and_api(*CORS_FLAGS)
    check_policy_with_flags(url)
    assert allowed_origin(url, ALLOWED, "/config") == ALLOWED  # one policy for the whole server


def test_ui_server_without_flags_answers_no_foreign_origin(ui_and_api):
    url = ui_and_api()
    check_no_foreign_origin(url)
    for path in ("/config", "/gradio_api/info"):  # Gradio's routes: its own policy echoed these
        assert allowed_origin(url, FOREIGN, path, Host="studio.lan") is None
        assert allowed_origin(url, "http://localhost:9999", path) is None


def test_gradio_cors_policy_is_replaced_on_a_running_server():
    """The mechanism on a bare launched Blocks: Gradio's middleware echoes any Origin for a non-localhost
    Host; after install_cors only the flags' origins get an answer."""
    with gr.Blocks() as blocks:
        gr.Markdown("x")
    fastapi_app, url, _ = blocks.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        url = url.rstrip("/")
        assert allowed_origin(url, FOREIGN, "/config", Host="studio.lan") == FOREIGN  # Gradio's own policy
        install_cors(fastapi_app, parse_flags(["--cors-allow-origins", ALLOWED]), replace="CustomCORSMiddleware")
        assert allowed_origin(url, FOREIGN, "/config", Host="studio.lan") is None
        assert allowed_origin(url, ALLOWED, "/config", Host="studio.lan") == ALLOWED
        assert preflight(url, FOREIGN, "/config").status_code == 400
    finally:
        blocks.close()


# 3. Bad flag values stop start-up -------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (("--cors-allow-origins-regex", "https://(unclosed"),
     "argument --cors-allow-origins-regex: 'https://(unclosed' is not a regular expression"),
    (("--cors-allow-origins", "http://a.example,localhost:5173"),
     "argument --cors-allow-origins: 'localhost:5173' is not an origin such as http://localhost:8080"),
])
def test_a_malformed_cors_flag_stops_start_up_with_its_name(tmp_path, flags, message):
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--data-dir", str(tmp_path), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and message in done.stderr  # before anything loads
    assert "Traceback" not in done.stderr
