"""A browser page served from another localhost port calls the API, as browser-based A1111 clients do:
with --cors-allow-origins naming the page's origin it can POST img2img and GET progress; without the flag
the browser refuses (fetch throws) and the request never runs."""

import base64
import functools
import http.server
import io
import threading

import pytest
from browser import free_port, outputs_today, running_app
from PIL import Image

pytestmark = pytest.mark.browser

PAGE = "<!doctype html><title>canvas client</title><p>A1111 client on another origin</p>"

CALL_API = """async ([base, image]) => {
  const out = {};
  try {
    const r = await fetch(base + "/sdapi/v1/img2img", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({init_images: [image], prompt: "a red barn", steps: 2, width: 64, height: 64, seed: 7,
                            denoising_strength: 0.6, save_images: true})});
    const body = await r.json();
    out.img2img = {status: r.status, images: body.images.length, png: body.images[0].slice(0, 11),
                   seed: JSON.parse(body.info).seed};
  } catch (e) { out.img2img = "refused: " + e; }
  try {
    const r = await fetch(base + "/sdapi/v1/progress?skip_current_image=true");
    out.progress = {status: r.status, keys: Object.keys(await r.json()).sort()};
  } catch (e) { out.progress = "refused: " + e; }
  return out;
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines on the test's stderr
        pass


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory):
    """http://127.0.0.1:<port> serving the client page (a tiny http.server in a thread)."""
    folder = tmp_path_factory.mktemp("page")
    (folder / "index.html").write_text(PAGE)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def init_image() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (180, 60, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def call_from_page(browser, page_origin: str, api_url: str) -> dict:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{page_origin}/index.html")
        return page.evaluate(CALL_API, [api_url.rstrip("/"), init_image()])
    finally:
        context.close()


def test_a_page_of_an_allowed_origin_runs_img2img_and_reads_progress(browser, page_origin, tmp_path):
    with running_app(tmp_path, "--api", "--cors-allow-origins", page_origin) as url:
        result = call_from_page(browser, page_origin, url)
    assert result["img2img"] == {"status": 200, "images": 1, "png": "iVBORw0KGgo", "seed": 7}, result
    assert result["progress"]["status"] == 200
    assert result["progress"]["keys"] == ["current_image", "eta_relative", "progress", "state", "textinfo"]
    assert len(outputs_today(tmp_path)) == 1


def test_without_the_flag_the_browser_refuses_and_nothing_runs(browser, page_origin, tmp_path):
    with running_app(tmp_path, "--api") as url:
        result = call_from_page(browser, page_origin, url)
    assert result["img2img"].startswith("refused: TypeError: Failed to fetch"), result
    assert result["progress"].startswith("refused: TypeError: Failed to fetch"), result
    assert outputs_today(tmp_path) == []  # the pre-flight was refused: the POST was never sent
