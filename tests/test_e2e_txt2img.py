"""The guide's large-image recipe in a real browser, from an empty start: txt2img -> "Send to img2img" -> SD upscale.
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("txt2img-app")  # no models: the demo model
    with running_app(data_dir) as url:
        yield url, data_dir


def saved(data_dir: Path, kind: str) -> list[Path]:
    folder = data_dir / "outputs" / kind / datetime.date.today().isoformat()
    # published files only: a picture being written is a hidden temporary file until it is complete
    return sorted(p for p in folder.glob("*.png") if not p.name.startswith(".")) if folder.exists() else []


def generate(page, data_dir: Path, tab: str, kind: str, timeout: float = 90) -> Path:
    """Click the tab's Generate; wait for one more saved image and for the gallery to show it."""
    before = saved(data_dir, kind)
    page.locator(f"#{tab}_generate").click()
    deadline = time.monotonic() + timeout
    while len(saved(data_dir, kind)) <= len(before):
        if time.monotonic() > deadline:
            shot = Path("/tmp") / f"e2e-txt2img-failure-{time.time():.0f}.png"
            page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(f"no new image in {kind} after {timeout}s; progress: "
                                 f"{page.locator(f'#{tab}_progress').inner_text()!r}; screenshot: {shot}\n"
                                 f"--- app log ---\n{app_log(data_dir)[-4000:]}")
        time.sleep(0.2)
    new = [p for p in saved(data_dir, kind) if p not in before][-1]
    page.locator(f"#{tab}_gallery img[src*='{new.name}']").first.wait_for()
    return new


def test_txt2img_then_send_to_img2img_then_sd_upscale(page, server):
    _, data_dir = server
    # 1. txt2img, Hires. fix on: a 64x64 first pass made 96x96.
    page.get_by_role("tab", name="txt2img", exact=True).click()
    page.locator("#txt2img_prompt textarea").fill("a lighthouse at dusk")
    for elem_id, value in (("txt2img_steps", 2), ("txt2img_width", 64), ("txt2img_height", 64)):
        set_number(page, elem_id, value)
    page.locator("#txt2img_seed input").fill("4321")
    page.locator("#txt2img_hr input[type=checkbox]").check()
    page.locator("#txt2img_hires_fix").wait_for(state="visible")
    set_number(page, "txt2img_hr_scale", 1.5)
    set_number(page, "txt2img_hires_steps", 2)
    page.get_by_text("to 96x96").wait_for()
    first = generate(page, data_dir, "txt2img", "txt2img-images")
    assert Image.open(first).size == (96, 96)
    info = parse_infotext(read_infotext(Image.open(first)))
    assert (info["Seed"], info["Hires upscale"], info["Size-1"]) == ("4321", "1.5", "64")
    page.get_by_text("Done: 1 image").wait_for()

    # 2. Send to img2img: the picture and its parameters (the seed) land on the img2img sub-tab.
    page.locator("#txt2img_send_to_img2img").click()
    page.locator("#img2img_image img").first.wait_for()
    page.wait_for_function("() => document.querySelector('#img2img_seed input').value === '4321'")
    assert page.locator("#img2img_prompt textarea").input_value() == "a lighthouse at dusk"

    # 3. SD upscale x2 in 64x64 tiles (the guide: choose the script, pick an upscaler, Generate).
    page.locator("#script_list input").click()
    page.get_by_role("option", name="SD upscale", exact=True).click()
    page.locator("#script_sd_upscale").wait_for(state="visible")
    set_number(page, "img2img_steps", 2)
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    set_number(page, "script_sd_upscale_overlap", 0)
    page.locator("#script_sd_upscale_upscaler").get_by_label("Lanczos", exact=True).check()
    upscaled = generate(page, data_dir, "img2img", "img2img-images")
    assert Image.open(upscaled).size == (192, 192)  # the 96x96 picture x2
    info = parse_infotext(read_infotext(Image.open(upscaled)))
    assert info["SD upscale upscaler"] == "Lanczos" and info["Seed"] == "4321"
