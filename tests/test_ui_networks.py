"""The UI's extra-networks panel (Lora / Textual Inversion lists that insert tags) and Styles row, in-process:
pure helpers, then the built app's handlers on the demo model."""

import gradio as gr
import pytest
from network_files import embedding_vectors, write_a1111_embedding, write_kohya_lora
from PIL import Image

import app
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from ui.extra_networks_panel import toggle_lora, toggle_word
from ui.send_to import field_updates
from ui.values import FIELD_NAMES, request_from_fields


@pytest.mark.parametrize("prompt, name, expected", [
    ("a cat", "detail", "a cat <lora:detail:1>"),
    ("", "detail", "<lora:detail:1>"),
    ("a cat <lora:detail:0.6>, forest", "detail", "a cat, forest"),
    ("a cat <lora:detailed:1>", "detail", "a cat <lora:detailed:1> <lora:detail:1>"),
])
def test_clicking_a_lora_adds_its_tag_or_takes_it_out(prompt, name, expected):
    assert toggle_lora(prompt, name) == expected


def test_clicking_an_embedding_adds_its_name_or_takes_it_out():
    assert toggle_word("a cat", "easyneg") == "a cat easyneg"
    assert toggle_word("a cat, easyneg", "easyneg") == "a cat"
    assert toggle_word("easynegative", "easyneg") == "easynegative easyneg"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_kohya_lora(data / "models" / "Lora" / "detail.safetensors", output_name="detail_v2")
    write_a1111_embedding(data / "embeddings" / "easyneg.pt", embedding_vectors(2))
    (data / "styles.csv").write_text('name,prompt,negative_prompt\nFilm,"film still of {prompt}",lowres\n')
    return app.create_app(parse_flags(["--data-dir", str(data)])), data


def handler(parts, name):
    return next(f.fn for f in parts.blocks.fns.values() if f.name == name)


def element(parts, elem_id):
    return next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_the_panel_lists_the_files_and_inserts_tags(parts):
    parts, data = parts
    loras = element(parts, "img2img_lora_cards")
    assert isinstance(loras, gr.Dataset) and loras.samples == [["detail", "detail_v2", "SD1"]]
    assert element(parts, "img2img_ti_cards").samples == [["easyneg", "2 vectors"]]
    assert handler(parts, "add_lora")(["detail", "detail_v2", "SD1"], "a cat") == "a cat <lora:detail:1>"
    assert handler(parts, "add_embedding")(["easyneg", "2 vectors"], "a cat") == "a cat easyneg"
    assert handler(parts, "show_loras")("nothing").raw_samples == []
    write_kohya_lora(data / "models" / "Lora" / "later.safetensors", seed=4)
    lora_update, _, summary = handler(parts, "refresh_extra_networks")("", "")
    assert [row[0] for row in lora_update.raw_samples] == ["detail", "later"] and "2 LoRA" in summary


def test_styles_row_applies_styles_and_generate_uses_the_choice(parts):
    parts, _ = parts
    dropdown = element(parts, "img2img_styles")
    assert dropdown.choices == [("Film", "Film")] and dropdown.multiselect
    assert handler(parts, "apply_styles")(["Film"], "a cat", "ugly") == ("film still of a cat", "ugly, lowres", [])
    assert "styles" in FIELD_NAMES  # a request field: Generate applies the choice, PNG Info leaves it as it is
    request = request_from_fields({**_defaults(), "styles": ["Film"], "prompt": "a cat"}, Image.new("RGB", (64, 64)))
    assert request.styles == ("Film",)
    result = parts.engine.img2img(request.replace(steps=2, width=64, height=64, save_images=False))
    assert parse_infotext(result.infotexts[0])["Prompt"] == "film still of a cat"


def test_png_info_pastes_the_prompt_with_its_tags(parts):
    infotext = ('a cat <lora:detail_v2:0.7>, easyneg\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 1, '
                'Size: 64x64, Lora hashes: "detail_v2: 0123456789ab", TI hashes: "easyneg: ba9876543210"')
    assert field_updates(infotext).values["prompt"] == "a cat <lora:detail_v2:0.7>, easyneg"
    assert parse_infotext(infotext)["Lora hashes"] == "detail_v2: 0123456789ab"


def _defaults():
    from test_ui_values import DEFAULTS  # noqa: PLC0415 - the full widget defaults

    return dict(DEFAULTS)
