"""End to end in a real browser: the Extra networks panel puts a LoRA tag and an embedding name into the
prompt, and the Styles box's 📋 writes a style into the prompts (Debian's Chromium, as tests/browser.py)."""

from __future__ import annotations

import pytest
from browser import running_app
from network_files import embedding_vectors, write_a1111_embedding, write_kohya_lora

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("app-data")
    write_kohya_lora(data_dir / "models" / "Lora" / "detail.safetensors")
    write_a1111_embedding(data_dir / "embeddings" / "easyneg.pt", embedding_vectors(2))
    (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\nFilm,"film still of {prompt}",lowres\n')
    with running_app(data_dir) as url:
        yield url, data_dir


def test_extra_networks_panel_inserts_tags_and_styles_apply(page):
    prompt = page.locator("#img2img_prompt textarea")
    prompt.fill("a fox")
    page.locator("#img2img_extra_networks").get_by_text("Extra networks").click()
    page.locator("#img2img_lora_cards").get_by_text("detail").first.click()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value.includes('<lora:')")
    assert prompt.input_value() == "a fox <lora:detail:1>"
    page.locator("#img2img_extra_networks_tabs").get_by_role("tab", name="Textual Inversion").click()
    page.locator("#img2img_ti_cards").get_by_text("easyneg").first.click()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value.endsWith('easyneg')")
    page.locator("#img2img_styles input").click()
    page.get_by_role("option", name="Film").click()
    page.locator("#img2img_style_apply").click()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value.startsWith('film')")
    assert prompt.input_value() == "film still of a fox <lora:detail:1> easyneg"
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "lowres"
