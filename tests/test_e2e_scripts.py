"""The Script dropdown, the Outpaint / Loopback / SD upscale sub-tabs and Interrogate CLIP in a real browser:
`python app.py` on the demo model (64x64, 2 steps), driven by headless Chromium.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`); never `playwright install`.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from browser import app_log, running_app, set_number
from PIL import Image

from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext

pytestmark = pytest.mark.browser

LOOPBACK_INFOTEXT = ("a lighthouse\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 99, Size: 64x64, "
                     "Denoising strength: 0.6, Final denoising strength: 0.3, Denoising curve: Aggressive, "
                     "Version: x")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("scripts-app")  # no models: the demo model, no interrogator
    with running_app(data_dir) as url:
        yield url, data_dir


@pytest.fixture
def source_png(tmp_path) -> Path:
    path = tmp_path / "source.png"
    Image.new("RGB", (64, 64), (40, 120, 200)).save(path)
    return path


# Helpers ----------------------------------------------------------------------------------------------------
def input_value(page, selector: str) -> str:
    return page.locator(selector).input_value()


def wait_for_value(page, selector: str, value: str) -> None:
    page.wait_for_function("([s, v]) => { const e = document.querySelector(s); return e && e.value === v; }",
                           arg=[selector, value])


def choose_script(page, title: str, key: str | None) -> None:
    page.locator("#script_list input").click()
    page.get_by_role("option", name=title, exact=True).click()
    wait_for_value(page, "#script_list input", title)
    if key:
        page.locator(f"#script_{key}").wait_for(state="visible")


def upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f"#{elem_id} img[src*='gradio_api/file=']").first.wait_for()


def saved(data_dir: Path, kind: str = "img2img-images") -> list[Path]:
    folder = data_dir / "outputs" / kind / datetime.date.today().isoformat()
    return sorted(folder.glob("*.png")) if folder.exists() else []


def generate(page, data_dir: Path, new_files: int, timeout: float = 60) -> list[Path]:
    """Click Generate; wait until `new_files` more images are saved and the gallery shows the last one."""
    before = saved(data_dir)
    page.locator("#img2img_generate").click()
    deadline = time.monotonic() + timeout
    while len(saved(data_dir)) < len(before) + new_files:
        if time.monotonic() > deadline:
            shot = Path("/tmp") / f"e2e-scripts-failure-{time.time():.0f}.png"
            page.screenshot(path=str(shot), full_page=True)
            progress = page.locator("#img2img_progress").inner_text()
            raise AssertionError(f"no {new_files} new images after {timeout}s; progress: {progress!r}; "
                                 f"screenshot: {shot}\n--- app log ---\n{app_log(data_dir)[-4000:]}")
        time.sleep(0.2)
    files = [p for p in saved(data_dir) if p not in before]
    page.locator(f"#img2img_gallery img[src*='{files[-1].name}']").first.wait_for()
    return files


def infotext_of(path: Path) -> dict:
    return parse_infotext(read_infotext(Image.open(path)))


# Tests ------------------------------------------------------------------------------------------------------
def test_every_script_runs_from_the_dropdown(page, server, source_png):
    _, data_dir = server
    upload(page, "img2img_image", source_png)
    set_number(page, "img2img_steps", 2)
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    assert not page.locator("#script_loopback").is_visible()

    # Loopback, 2 loops: both loops' images and a grid.
    choose_script(page, "Loopback", "loopback")
    assert input_value(page, "#script_loopback_loops input[type=number]") == "4"
    set_number(page, "script_loopback_loops", 2)
    grids_before = len(saved(data_dir, "img2img-grids"))
    loops = generate(page, data_dir, 2)
    page.get_by_text("Done: 3 images").wait_for()
    assert len(saved(data_dir, "img2img-grids")) == grids_before + 1
    info = infotext_of(loops[0])
    assert (info["Final denoising strength"], info["Denoising curve"]) == ("0.5", "Linear")
    assert int(infotext_of(loops[1])["Seed"]) == int(info["Seed"]) + 1

    # SD upscale x2 of the 64x64 image in 64x64 tiles: one 128x128 image.
    choose_script(page, "SD upscale", "sd_upscale")
    assert not page.locator("#script_loopback").is_visible()
    set_number(page, "script_sd_upscale_overlap", 0)
    page.locator("#script_sd_upscale_upscaler").get_by_label("Lanczos", exact=True).check()
    [upscaled] = generate(page, data_dir, 1)
    assert Image.open(upscaled).size == (128, 128)
    info = infotext_of(upscaled)
    assert (info["SD upscale overlap"], info["SD upscale upscaler"]) == ("0", "Lanczos")

    # Poor man's outpainting, 64 px to the right in 128x128 tiles: 128x64.
    set_number(page, "img2img_width", 128)
    set_number(page, "img2img_height", 128)
    choose_script(page, "Poor man's outpainting", "poor_man")
    page.get_by_text("denoising and CFG at max, 50-100 steps, Euler a or DPM2 a").wait_for()
    set_number(page, "script_poor_man_pixels", 64)
    for side in ("left", "up", "down"):
        page.locator("#script_poor_man_directions").get_by_label(side, exact=True).uncheck()
    [wider] = generate(page, data_dir, 1)
    assert Image.open(wider).size == (128, 64)
    assert infotext_of(wider)["Masked content"] == "fill"

    # Outpainting mk2, 64 px to the right: 128x64.
    choose_script(page, "Outpainting mk2", "mk2")
    set_number(page, "script_mk2_pixels", 64)
    for side in ("left", "up", "down"):
        page.locator("#script_mk2_directions").get_by_label(side, exact=True).uncheck()
    [grown] = generate(page, data_dir, 1)
    assert Image.open(grown).size == (128, 64)

    # A bad combination is a readable error and the page keeps working.
    choose_script(page, "SD upscale", "sd_upscale")
    set_number(page, "script_sd_upscale_overlap", 128)
    page.locator("#img2img_generate").click()
    page.get_by_text("tile overlap 128 must be smaller than the tile size 128x128").first.wait_for()


def test_script_tabs_and_send_buttons_select_the_script(page, png_with_infotext, source_png):
    # A script sub-tab selects its script; going back to a plain tab undoes that.
    page.get_by_role("tab", name="SD upscale", exact=True).click()
    wait_for_value(page, "#script_list input", "SD upscale")
    page.locator("#script_sd_upscale").wait_for(state="visible")
    page.get_by_role("tab", name="Outpaint", exact=True).click()
    wait_for_value(page, "#script_list input", "Poor man's outpainting")
    page.locator("#img2img_img2img_tab-button").click()  # the img2img sub-tab
    wait_for_value(page, "#script_list input", "None")

    # PNG Info -> Send to img2img restores Loopback's settings from the infotext.
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png_with_infotext(LOOPBACK_INFOTEXT)))
    page.wait_for_function("document.querySelector('#pnginfo_generation_info textarea').value.length > 0")
    page.locator("#pnginfo_send_to_img2img").click()
    wait_for_value(page, "#script_list input", "Loopback")
    wait_for_value(page, "#script_loopback_final_denoising_strength input[type=number]", "0.3")
    assert page.locator("#script_loopback_denoising_curve").get_by_label("Aggressive").is_checked()
    wait_for_value(page, "#img2img_denoising_strength input[type=number]", "0.6")

    # Send to SD upscale: that tab, its image, its script.
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_send_to_sd_upscale").click()
    page.locator("#img2img_sd_upscale_image img").first.wait_for()
    wait_for_value(page, "#script_list input", "SD upscale")


def test_interrogate_clip_says_what_is_missing_then_fills_the_prompt(page, server, source_png):
    _, data_dir = server
    upload(page, "img2img_image", source_png)
    page.locator("#img2img_prompt textarea").fill("old prompt")
    choose_script(page, "Loopback", "loopback")
    clip = page.locator("#script_loopback_append_interrogation input[value='CLIP']")
    assert clip.is_disabled()  # no models yet
    page.locator("#img2img_interrogate").click()
    page.get_by_text("Interrogate CLIP needs a BLIP captioning model").first.wait_for()
    assert input_value(page, "#img2img_prompt textarea") == "old prompt"

    # Tiny random BLIP and CLIP models dropped into models/ while the app runs: it picks them up.
    from test_interrogate import _tiny_blip, _tiny_clip

    _tiny_blip(data_dir / "models" / "BLIP")
    _tiny_clip(data_dir / "models" / "CLIP")
    page.locator("#img2img_interrogate").click()
    page.wait_for_function("document.querySelector('#img2img_prompt textarea').value !== 'old prompt'",
                           timeout=60_000)
    prompt = input_value(page, "#img2img_prompt textarea")
    assert "by " in prompt, prompt  # the CLIP-ranked artist ("by ..."), after the BLIP caption

    choose_script(page, "None", None)
    choose_script(page, "Loopback", "loopback")
    page.wait_for_function("!document.querySelector(\"#script_loopback_append_interrogation "
                           "input[value='CLIP']\").disabled")  # CLIP can be appended now
