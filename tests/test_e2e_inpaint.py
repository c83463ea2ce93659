"""The inpaint sub-tabs in a real browser: `python app.py` on the demo model, driven by headless Chromium.
A mask painted with the mouse (and none: an error), a transparent upload as the mask, Inpaint upload's mask
file (and none: an error), and PNG Info -> Inpaint.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`); never `playwright install`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from browser import app_log, outputs_today, running_app, set_number, upload_to_editor
from PIL import Image

from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext

pytestmark = pytest.mark.browser

SIZE = 128  # source and output size: whole picture at the same size keeps every unmasked pixel bit-identical
INFOTEXT = ("a fox in snow\nSteps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 1234, Size: 64x64, "
            "Denoising strength: 0.4, Mask blur: 9, Mask mode: Inpaint not masked, Masked content: fill, "
            "Inpaint area: Only masked, Masked area padding: 48, Mask grow: -4, Soft inpainting: True, Version: x")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("inpaint-app")  # empty models/ -> the demo model runs
    with running_app(data_dir) as url:
        yield url, data_dir


def gradient() -> np.ndarray:
    """Every pixel differs from its neighbours, so "unchanged" means something."""
    arr = np.zeros((SIZE, SIZE, 3), np.uint8)
    arr[..., 0] = np.arange(SIZE)[None, :] * 2
    arr[..., 1] = np.arange(SIZE)[:, None] * 2
    arr[..., 2] = 90
    return arr


@pytest.fixture
def source_png(tmp_path) -> Path:
    path = tmp_path / "source.png"
    Image.fromarray(gradient(), "RGB").save(path)
    return path


HOLE = np.zeros((SIZE, SIZE), bool)  # where the tests' masks are
HOLE[40:72, 48:96] = True


@pytest.fixture
def erased_png(tmp_path) -> Path:
    """The picture with HOLE erased in an external editor: transparent black, as many editors save it."""
    rgba = np.dstack([gradient(), np.full((SIZE, SIZE), 255, np.uint8)])
    rgba[HOLE] = 0
    path = tmp_path / "erased.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


@pytest.fixture
def mask_png(tmp_path) -> Path:
    """A black-and-white mask file, white on HOLE."""
    path = tmp_path / "mask.png"
    Image.fromarray(HOLE.astype(np.uint8) * 255, "L").save(path)
    return path


# Helpers ----------------------------------------------------------------------------------------------------
def open_inpaint_tab(page) -> None:
    page.get_by_role("tab", name="Inpaint", exact=True).click()
    page.locator("#img2img_mask_blur").wait_for()  # the inpaint controls appear with the tab


def small_fast_run(page) -> None:
    set_number(page, "img2img_steps", 4)
    set_number(page, "img2img_width", SIZE)
    set_number(page, "img2img_height", SIZE)
    set_number(page, "img2img_mask_blur", 0)


def generate(page, data_dir: Path, timeout: float = 45) -> Path:
    """Click Generate and return the PNG the run saved (on a timeout: what the page and the server show). Waits
    for the file, not the "Done" text, which an earlier run may have left on the page."""
    before = len(outputs_today(data_dir))
    page.locator("#img2img_generate").click()
    deadline = time.monotonic() + timeout
    while len(outputs_today(data_dir)) == before:
        if time.monotonic() > deadline:
            shot = Path("/tmp") / f"e2e-inpaint-failure-{time.time():.0f}.png"
            page.screenshot(path=str(shot), full_page=True)
            progress = page.locator("#img2img_progress").inner_text()
            raise AssertionError(f"no output after {timeout}s; progress: {progress!r}; screenshot: {shot}\n"
                                 f"--- app log ---\n{app_log(data_dir)[-4000:]}")
        page.wait_for_timeout(100)
    page.get_by_text("Done: 1 image").wait_for()
    files = outputs_today(data_dir)
    assert len(files) == before + 1, files
    return files[-1]


def changed_pixels(saved: Path, source: np.ndarray) -> np.ndarray:
    out = np.asarray(Image.open(saved).convert("RGB"), np.int16)
    assert out.shape == source.shape
    return np.abs(out - source.astype(np.int16)).max(axis=-1) > 0


def sent_editor_value(joins: list[dict]) -> dict:
    """What the browser sent as the Inpaint editor's value at Generate (background, layers, composite)."""
    values = [v for j in joins for v in j["data"] if isinstance(v, dict) and "layers" in v and v.get("background")]
    assert values, "the Inpaint editor's value was not sent"
    return values[-1]


# Tests ------------------------------------------------------------------------------------------------------
def test_a_mask_painted_with_the_mouse_is_redrawn_and_the_rest_kept_bit_identical(page, server, source_png):
    _, data_dir = server
    open_inpaint_tab(page)
    upload_to_editor(page, "img2maskimg", source_png)
    small_fast_run(page)
    # Nothing painted yet: as A1111, the picture comes back unchanged, with the notice saying why.
    page.locator("#img2img_generate").click()
    page.get_by_text("the mask is all black: there is nothing to inpaint").first.wait_for()

    page.wait_for_function("() => { const c = document.querySelector('#img2maskimg canvas'); "
                           "return c && c.getBoundingClientRect().width > 100; }")
    canvas = page.locator("#img2maskimg canvas").first
    canvas.scroll_into_view_if_needed()  # the mouse can only draw on what the viewport shows
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=3)  # each step re-renders the canvas (slow on CPU)
    page.mouse.up()
    joins: list[dict] = []
    page.on("request", lambda r: joins.append(json.loads(r.post_data)) if "/queue/join" in r.url else None)
    saved = generate(page, data_dir)

    text = read_infotext(Image.open(saved))
    params = parse_infotext(text)
    assert (params["Mask blur"], params["Size-1"], params["Steps"]) == ("0", str(SIZE), "4"), text
    # The mask is the stroke layer the browser sent: its painted pixels.
    layer = Image.open(sent_editor_value(joins)["layers"][0]["path"])
    painted = np.asarray(layer.convert("RGBA"))[..., 3] > 128
    rows = np.nonzero(painted.any(axis=1))[0]
    assert painted[SIZE // 2, SIZE // 2] and 0 < len(rows) < SIZE * 0.6, "the stroke is not where it was drawn"
    changed = changed_pixels(saved, gradient())
    assert changed[painted].mean() > 0.9  # redrawn inside the stroke
    assert not changed[~painted].any()  # and not one pixel changed outside it (mask blur 0)
    assert not changed[: rows.min()].any() and not changed[rows.max() + 1:].any()


def test_a_transparent_upload_or_an_uploaded_mask_is_the_mask(page, server, source_png, erased_png, mask_png):
    _, data_dir = server
    open_inpaint_tab(page)
    upload_to_editor(page, "img2maskimg", erased_png)  # nothing painted: the erased pixels are the mask
    small_fast_run(page)
    changed = changed_pixels(generate(page, data_dir), gradient())
    assert not changed[~HOLE].any() and changed[HOLE].mean() > 0.9

    page.get_by_role("tab", name="Inpaint upload", exact=True).click()
    page.locator("#img_inpaint_base input[type=file]").set_input_files(str(source_png))
    page.locator("#img_inpaint_base img[src*='gradio_api/file=']").first.wait_for()
    page.locator("#img2img_generate").click()
    page.get_by_text("no mask in the Inpaint upload tab").first.wait_for()
    page.locator("#img_inpaint_mask input[type=file]").set_input_files(str(mask_png))
    page.locator("#img_inpaint_mask img[src*='gradio_api/file=']").first.wait_for()
    changed = changed_pixels(generate(page, data_dir), gradient())
    assert not changed[~HOLE].any() and changed[HOLE].mean() > 0.9  # white = redraw


def test_png_info_sends_image_and_inpaint_settings_to_the_inpaint_tab(page, png_with_infotext):
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png_with_infotext(INFOTEXT)))
    page.wait_for_function("document.querySelector('#pnginfo_generation_info textarea').value.length > 0")
    page.locator("#pnginfo_send_to_inpaint").click()
    page.locator("#img2img_mask_blur").wait_for()  # switched to img2img > Inpaint; its controls are shown
    page.wait_for_function("document.querySelector('#img2img_prompt textarea').value == 'a fox in snow'")
    page.wait_for_function("document.querySelector('#img2img_mask_blur input[type=number]').value == '9'")
    assert page.locator("#img2img_inpaint_full_res_padding input[type=number]").input_value() == "48"
    assert page.locator("#img2img_mask_grow input[type=number]").input_value() == "-4"
    for elem_id, label in (("img2img_mask_mode", "Inpaint not masked"), ("img2img_inpainting_fill", "fill"),
                           ("img2img_inpaint_full_res", "Only masked")):
        assert page.locator(f"#{elem_id}").get_by_label(label, exact=True).is_checked(), label
    assert page.locator("#soft_inpainting_enabled input").is_checked()
    # The picture is in the Inpaint editor (shown before: a tab's editor first shown by this very update stayed
    # blank when the page was on PNG Info).
    page.locator("#img2maskimg").get_by_text("Upload an image").wait_for(state="hidden")
    page.locator("#img2maskimg canvas").first.wait_for()
