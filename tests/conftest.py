"""Shared test set-up: the project root on sys.path (so plain `pytest` finds pipelines/, ui/, app.py) and
offline, telemetry-free environment variables for everything the tests import or start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def png_with_infotext(tmp_path: Path):
    """Write a small PNG carrying an A1111 "parameters" text chunk; returns (path, infotext)."""

    def make(infotext: str, size: tuple[int, int] = (96, 64), color=(200, 80, 40)) -> Path:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        path = tmp_path / f"with-infotext-{len(list(tmp_path.iterdir()))}.png"
        Image.new("RGB", size, color).save(path, pnginfo=info)
        return path

    return make


# The browser tests: one Chromium per module, a fresh page per test on the module's own `server`
# fixture ((url, data_dir) of an app started with tests/browser.running_app).
@pytest.fixture(scope="module")
def browser():
    from browser import chromium  # noqa: PLC0415 - only the browser tests need playwright

    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server[0])
    page.wait_for_selector("#txt2img_generate")  # the page opens on txt2img, as A1111's does
    page.locator("#tab_img2img-button").click()  # most browser tests start on img2img
    page.wait_for_selector("#img2img_generate")
    yield page
    context.close()
