"""Saved styles (styles.csv, A1111's format): merging with {prompt}, reading the file, extracting styles from a
pasted prompt, and the engine applying a request's styles (recorded in the infotext's prompt, as A1111)."""

import numpy as np
import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.styles import PromptStyle, StyleDatabase, apply_styles, extract_styles, merge_prompts

CSV = '''name,prompt,negative_prompt
Cinematic,"cinematic still of {prompt}, film grain","cartoon, {prompt}"
Sharp,"sharp focus, 8k",blurry
"Old, text",old style,
'''


def test_merge_puts_the_prompt_at_the_placeholder_or_appends():
    assert merge_prompts("a photo of {prompt}, dusk", "a cat") == "a photo of a cat, dusk"
    assert merge_prompts("sharp focus", "a cat ") == "a cat, sharp focus"
    assert merge_prompts("sharp focus", "") == "sharp focus"
    assert merge_prompts("", "a cat") == "a cat"
    styles = [PromptStyle("A", "{prompt}, a", "na"), PromptStyle("B", "b {prompt}", "nb {prompt}")]
    assert apply_styles("cat", "ugly", styles) == ("b cat, a", "nb ugly, na")


def test_the_file_is_read_and_read_again_when_it_changes(tmp_path):
    path = tmp_path / "styles.csv"
    db = StyleDatabase(path)
    assert db.styles == {}
    path.write_text(CSV, encoding="utf-8-sig")
    assert db.names() == ["Cinematic", "Sharp", "Old, text"]
    assert db.styles["Cinematic"] == PromptStyle("Cinematic", "cinematic still of {prompt}, film grain",
                                                 "cartoon, {prompt}")
    prompt, negative, notices = db.apply("a cat", "", ["Cinematic", "Sharp", "Missing"])
    assert prompt == "cinematic still of a cat, film grain, sharp focus, 8k"
    assert negative == "cartoon,, blurry"  # A1111 merges "cartoon, {prompt}" with "" the same way
    assert notices == ["Style 'Missing' is not in styles.csv; skipped"]
    db.save(PromptStyle("New", "new {prompt}", ""))
    assert StyleDatabase(path).styles["New"].prompt == "new {prompt}" and "Sharp" in db.styles
    assert (tmp_path / "styles.csv.bak").exists()


def test_extract_finds_the_styles_of_a_styled_prompt():
    styles = [PromptStyle("Cinematic", "cinematic still of {prompt}, film grain", "cartoon, {prompt}"),
              PromptStyle("Sharp", "sharp focus, 8k", "blurry")]
    prompt, negative = apply_styles("a cat", "ugly", styles)
    assert extract_styles(prompt, negative, styles) == (["Cinematic", "Sharp"], "a cat", "ugly")
    assert extract_styles("a dog", "", styles) == ([], "a dog", "")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    (data / "styles.csv").write_text(CSV, encoding="utf-8")
    return make_demo_engine(data)


def run(engine, **kw):
    rng = np.random.RandomState(0)
    image = Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8"), "RGB")
    return engine.img2img(Img2ImgRequest(init_image=image, width=64, height=64, steps=4, seed=5,
                                         save_images=False, **kw))


def test_the_engine_applies_a_requests_styles(engine):
    styled = run(engine, prompt="a cat", negative_prompt="ugly", styles=("Cinematic", "Sharp"))
    written = run(engine, prompt="cinematic still of a cat, film grain, sharp focus, 8k",
                  negative_prompt="cartoon, ugly, blurry")
    assert np.array_equal(np.asarray(styled.images[0]), np.asarray(written.images[0]))
    parsed = parse_infotext(styled.infotexts[0])
    assert parsed["Prompt"] == "cinematic still of a cat, film grain, sharp focus, 8k"
    assert parsed["Negative prompt"] == "cartoon, ugly, blurry"
    assert styled.prompt == parsed["Prompt"]
    missing = run(engine, prompt="a cat", styles=("Nope",))
    assert missing.notices == ["Style 'Nope' is not in styles.csv; skipped"]
