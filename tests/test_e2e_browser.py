"""End to end in a real browser: `python app.py` on the demo model, driven by headless Chromium.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`); never `playwright install`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from browser import app_log, outputs_today, running_app, set_number, upload_to_editor
from PIL import Image

from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext

pytestmark = pytest.mark.browser

SOURCE_COLOR = (200, 80, 40)
SKETCH_RED = (255, 0, 0)  # the brush's default colour (ui.modes.sketch_editor)
INFOTEXT = ("a fox in snow\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, "
            "CFG scale: 6.5, Seed: 1234, Size: 640x384, Model: m, Denoising strength: 0.4, Version: x")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("app-data")  # empty models/ -> the demo model runs
    with running_app(data_dir) as url:
        yield url, data_dir


@pytest.fixture
def source_png(tmp_path) -> Path:
    path = tmp_path / "source.png"
    Image.new("RGB", (96, 64), SOURCE_COLOR).save(path)
    return path


def wait_for_new_output(data_dir: Path, before: int, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = outputs_today(data_dir)
        if len(files) > before:
            return files[-1]
        time.sleep(0.1)
    raise AssertionError(f"no new output image after {timeout}s\n{app_log(data_dir)[-3000:]}")


def generate_and_wait(page, data_dir: Path, timeout_ms: int = 45_000) -> None:
    """Click Generate and wait for the run to finish; on a timeout, say what the page and the server show."""
    page.locator("#img2img_generate").click()
    try:
        page.get_by_text("Done: 1 image").wait_for(timeout=timeout_ms)
    except Exception as exc:
        shot = Path("/tmp") / f"e2e-failure-{time.time():.0f}.png"
        page.screenshot(path=str(shot), full_page=True)
        progress = page.locator("#img2img_progress").inner_text()
        raise AssertionError(f"the run did not finish ({exc.__class__.__name__}); progress: {progress!r}; "
                             f"screenshot: {shot}\n--- app log ---\n{app_log(data_dir)[-4000:]}") from None


def test_img2img_generates_and_saves_the_png_with_its_infotext(page, server, source_png):
    url, data_dir = server
    # Generate with no image: a readable error, and the server keeps serving.
    page.locator("#img2img_generate").click()
    page.get_by_text("no image in the img2img tab").first.wait_for()

    # The image's change event (it updates the "Resize by" note) fires once the upload is the widget's value.
    with page.expect_response(lambda r: "/gradio_api/run/predict" in r.url):
        page.locator("#img2img_image input[type=file]").set_input_files(str(source_png))
    page.locator("#img2img_image img[src*='gradio_api/file=']").first.wait_for()
    page.locator("#img2img_prompt textarea").fill("a red fox")
    set_number(page, "img2img_steps", 4)
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    before = len(outputs_today(data_dir))
    generate_and_wait(page, data_dir)
    page.locator("#img2img_gallery img").first.wait_for()

    saved = wait_for_new_output(data_dir, before)
    text = read_infotext(Image.open(saved))
    assert text is not None
    seed = parse_infotext(text)["Seed"]
    assert re.fullmatch(rf"\d{{5}}-{seed}\.png", saved.name), saved.name
    assert text.startswith("a red fox\n")
    for fragment in ("Steps: 4", "Sampler: DPM++ 2M", "Schedule type: Karras", "Size: 64x64",
                     "Denoising strength: 0.75"):
        assert fragment in text, (fragment, text)
    assert Image.open(saved).size == (64, 64)
    # The infotext under the gallery is the saved file's.
    assert page.locator("#html_info_img2img textarea").input_value() == text
    # ♻️ puts the image's seed into the Seed box.
    page.locator("#img2img_reuse_seed").click()
    page.wait_for_function(f"document.querySelector('#img2img_seed input').value == '{seed}'")


def test_png_info_reads_parameters_and_sends_them_to_sketch(page, png_with_infotext):
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png_with_infotext(INFOTEXT)))
    info = page.locator("#pnginfo_generation_info textarea")
    page.wait_for_function("document.querySelector('#pnginfo_generation_info textarea').value.length > 0")
    assert info.input_value() == INFOTEXT

    page.locator("#pnginfo_send_to_sketch").click()
    page.locator("#img2img_sketch").wait_for()  # switched to img2img > Sketch
    page.wait_for_function("document.querySelector('#img2img_prompt textarea').value == 'a fox in snow'")
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "blurry"
    assert page.locator("#img2img_steps input[type=number]").input_value() == "12"
    assert page.locator("#img2img_cfg_scale input[type=number]").input_value() == "6.5"
    assert page.locator("#img2img_seed input").input_value() == "1234"
    assert page.locator("#img2img_width input[type=number]").input_value() == "640"
    assert page.locator("#img2img_denoising_strength input[type=number]").input_value() == "0.4"
    assert page.locator("#img2img_sampling input").input_value() == "DPM++ 2M"
    assert page.locator("#img2img_scheduler input").input_value() == "Karras"


def test_sketch_paints_on_the_image_and_the_composite_is_the_init_image(page, server, source_png):
    url, data_dir = server
    page.get_by_role("tab", name="Sketch", exact=True).click()  # not "Inpaint sketch"
    upload_to_editor(page, "img2img_sketch", source_png)
    canvas = page.locator("#img2img_sketch canvas").first
    canvas.wait_for()
    time.sleep(0.5)  # let the editor lay the image out before drawing on it
    canvas.scroll_into_view_if_needed()  # the mouse can only draw on what the viewport shows
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
    page.mouse.up()

    set_number(page, "img2img_steps", 4)
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    joins: list[dict] = []
    page.on("request", lambda r: joins.append(json.loads(r.post_data)) if "/queue/join" in r.url else None)
    before = len(outputs_today(data_dir))
    generate_and_wait(page, data_dir)
    saved = wait_for_new_output(data_dir, before)
    assert "Size: 64x64" in read_infotext(Image.open(saved))

    # What the browser sent as the Sketch value: background, the stroke layer, and their composite.
    editor = next(v for j in joins for v in j["data"] if isinstance(v, dict) and "composite" in v)
    composite = Image.open(editor["composite"]["path"]).convert("RGB")
    assert composite.size == (96, 64)
    assert composite.getpixel((48, 32)) == SKETCH_RED  # painted
    assert composite.getpixel((2, 2)) == SOURCE_COLOR  # untouched upload
