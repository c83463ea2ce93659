"""Extras end to end in a real browser: `python app.py` with a tiny ESRGAN model in models/ESRGAN; a single
picture upscaled by the model, then a batch of files with Lanczos. Needs Debian's Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from browser import app_log, running_app, set_number
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from tests.test_upscalers import tiny_esrgan

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("extras-app")
    (data_dir / "models" / "ESRGAN").mkdir(parents=True)
    save_file(tiny_esrgan(4).state_dict(), data_dir / "models" / "ESRGAN" / "4x-Tiny.safetensors")
    with running_app(data_dir) as url:
        yield url, data_dir


def picture(path: Path, size: tuple[int, int], seed: int, parameters: str | None = None) -> Path:
    pixels = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    Image.fromarray(pixels, "RGB").save(path, pnginfo=info)
    return path


def choose(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=label, exact=True).wait_for()
    page.wait_for_timeout(300)  # the list settles (it is re-rendered as it opens)
    page.get_by_role("option", name=label, exact=True).click()


def wait_for_files(folder: Path, count: int, data_dir: Path, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.png")) if folder.exists() else []
        if len(files) >= count:
            return files
        time.sleep(0.2)
    raise AssertionError(f"{count} extras outputs expected in {folder}\n{app_log(data_dir)[-3000:]}")


def test_extras_upscales_a_single_picture_and_a_batch_of_files(page, server, tmp_path):
    data_dir = server[1]
    out = data_dir / "outputs" / "extras-images"
    page.get_by_role("tab", name="Extras", exact=True).click()
    source = picture(tmp_path / "source.png", (40, 32), 1, "a red fox\nSteps: 12, Seed: 1234")
    page.locator("#extras_image input[type=file]").set_input_files(str(source))
    page.locator("#extras_image img").first.wait_for()
    choose(page, "extras_upscaler_1", "4x-Tiny")
    set_number(page, "extras_upscaling_resize", 2)
    page.locator("#extras_generate").click()
    (single,) = wait_for_files(out, 1, data_dir)
    page.locator("#html_info_extras").get_by_text("Postprocess upscaler: 4x-Tiny").wait_for()
    page.locator("#extras_gallery img").first.wait_for()
    with Image.open(single) as saved:
        saved.load()
        assert saved.size == (80, 64)
        assert saved.info["parameters"] == "a red fox\nSteps: 12, Seed: 1234"  # the source's text kept
        assert saved.info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: 4x-Tiny"

    page.get_by_role("tab", name="Batch Process", exact=True).click()
    files = [picture(tmp_path / "first.png", (24, 16), 2), picture(tmp_path / "second.png", (16, 16), 3)]
    page.locator("#extras_image_batch input[type=file]").set_input_files([str(f) for f in files])
    page.locator("#extras_image_batch").get_by_text("second").first.wait_for()  # the file list shows it
    choose(page, "extras_upscaler_1", "Lanczos")
    page.locator("#extras_generate").click()
    wait_for_files(out, 3, data_dir)
    for name, size in (("first.png", (48, 32)), ("second.png", (32, 32))):
        with Image.open(out / name) as saved:
            assert saved.size == size
    page.locator("#html_info_extras").get_by_text("Postprocess upscaler: Lanczos").wait_for()
    assert page.locator("#extras_gallery img").count() >= 1

    # PNG Info's "Send to extras": the picture (its text too) lands in Single Image and the tab is shown
    page.get_by_role("tab", name="PNG Info").click()
    sent = picture(tmp_path / "sent.png", (16, 24), 4, "a blue jay\nSteps: 9, Seed: 99")
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(sent))
    page.wait_for_function("document.querySelector('#pnginfo_generation_info textarea').value.includes('blue jay')")
    page.locator("#pnginfo_send_to_extras").click()
    page.locator("#extras_image img").first.wait_for()
    assert page.get_by_role("tab", name="Single Image", exact=True).get_attribute("aria-selected") == "true"
    page.locator("#extras_generate").click()
    newest = max(wait_for_files(out, 4, data_dir), key=lambda p: p.stat().st_mtime_ns)
    with Image.open(newest) as saved:
        saved.load()
        assert saved.size == (32, 48) and saved.info["parameters"] == "a blue jay\nSteps: 9, Seed: 99"
