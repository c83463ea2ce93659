"""The Batch sub-tab in a real browser: `python app.py` on the demo model, headless Chromium types an input, an
output and a mask folder, clicks Generate, and each picture is inpainted with its own mask into the output folder.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`); never `playwright install`.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from browser import app_log, running_app, set_number
from pictures import blocky_picture, box_mask
from PIL import Image

pytestmark = pytest.mark.browser

MASKS = {"a": (0, 0, 31, 63), "b": (32, 0, 63, 63)}  # left half of a, right half of b


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("batch-app")
    for folder in ("in", "masks"):
        (data_dir / folder).mkdir()
    for seed, name in enumerate(MASKS):
        blocky_picture(64, 64, seed=seed + 1).save(data_dir / "in" / f"{name}.png")
        box_mask((64, 64), MASKS[name]).save(data_dir / "masks" / f"{name}.png")
    (data_dir / "in" / "broken.png").write_bytes(b"not a png")
    with running_app(data_dir) as url:
        yield url, data_dir


def fill(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def test_batch_tab_inpaints_a_folder_with_masks_by_name(page, server):
    _, data_dir = server
    page.get_by_role("tab", name="Batch", exact=True).click()
    page.locator("#img2img_inpaint_controls").wait_for(state="visible")  # the inpaint options apply to masks
    fill(page, "img2img_batch_input_dir", "in")
    fill(page, "img2img_batch_output_dir", "out")
    fill(page, "img2img_batch_inpaint_mask_dir", "masks")
    set_number(page, "img2img_steps", 2)
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    set_number(page, "img2img_mask_blur", 0)
    set_number(page, "img2img_denoising_strength", 0.9)
    page.locator("#img2img_generate").click()
    out = data_dir / "out"
    deadline = time.monotonic() + 90
    while len(list(out.glob("*.png")) if out.exists() else []) < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"no outputs; progress: {page.locator('#img2img_progress').inner_text()!r}\n"
                                 f"{app_log(data_dir)[-3000:]}")
        time.sleep(0.2)
    page.get_by_text("Done: 2 images").wait_for()
    page.get_by_text("broken.png: not a readable picture").wait_for()
    assert page.locator("#img2img_gallery img").count() >= 1
    names = sorted(path.name for path in out.glob("*.png"))
    assert names == ["00000-a.png", "00001-b.png"]
    for name, stem in zip(names, MASKS):
        source = np.asarray(Image.open(data_dir / "in" / f"{stem}.png").convert("RGB"), dtype=np.int16)
        result = np.asarray(Image.open(out / name).convert("RGB"), dtype=np.int16)
        mask = np.asarray(box_mask((64, 64), MASKS[stem])) > 0
        diff = np.abs(result - source).max(axis=-1)
        assert diff[~mask].max() == 0 and diff[mask].mean() > 5
