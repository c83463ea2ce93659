"""LoRA: `<lora:name:weight>` tags, kohya files loaded through diffusers' loaders, weights, unloading, errors,
and the infotext's "Lora hashes". On the tiny demo model with LoRA files made by tests/network_files.py."""

import hashlib

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from network_files import write_kohya_lora, write_sd2_like_lora, write_sdxl_lora
from PIL import Image
from safetensors.torch import save_file

from pipelines.fields import RequestError
from pipelines.generation.extra_networks import LoraRef, extract_extra_networks, lora_tag
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.models.lora import addnet_hash


# 1. Tags ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt, text, refs", [
    ("a cat <lora:detail:0.7>, forest", "a cat , forest", [LoraRef("detail", 0.7, 0.7, "<lora:detail:0.7>")]),
    ("<lora:x>", "", [LoraRef("x", 1.0, 1.0, "<lora:x>")]),
    ("<lora:x:0.5:1.2>", "", [LoraRef("x", 0.5, 1.2, "<lora:x:0.5:1.2>")]),
    ("<lora:x:te=0.25:unet=0>", "", [LoraRef("x", 0.25, 0.0, "<lora:x:te=0.25:unet=0>")]),
    ("<lyco:y:0.3>", "", [LoraRef("y", 0.3, 0.3, "<lyco:y:0.3>", "lyco")]),
    ("a <lora:a:1> b <LORA:b:-0.5>", "a  b ", [LoraRef("a", 1, 1, "<lora:a:1>"),
                                              LoraRef("b", -0.5, -0.5, "<LORA:b:-0.5>")]),
    ("<hypernet:h:1> x", " x", [LoraRef("h", tag="<hypernet:h:1>", kind="hypernet")]),
    ("no tags (a:1.2) [b]", "no tags (a:1.2) [b]", []),
])
def test_tags_are_taken_out_of_the_text_with_their_weights(prompt, text, refs):
    assert extract_extra_networks(prompt) == (text, refs)


def test_a_weight_that_is_not_a_number_names_the_tag():
    with pytest.raises(RequestError, match=r"<lora:x:strong>.*'strong' is not a number") as err:
        extract_extra_networks("a <lora:x:strong>")
    assert err.value.field == "prompt"
    assert lora_tag("x", 0.75) == "<lora:x:0.75>" and lora_tag("x") == "<lora:x:1>"


# 2. On the model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    lora_dir = data / "models" / "Lora"
    write_kohya_lora(lora_dir / "detail.safetensors", seed=1, output_name="detail_alias")
    write_kohya_lora(lora_dir / "sub" / "style.safetensors", seed=2)
    write_kohya_lora(lora_dir / "te_only.safetensors", seed=5, unet=False)
    write_sdxl_lora(lora_dir / "xl_lora.safetensors")
    write_sd2_like_lora(lora_dir / "sd2_lora.safetensors")
    save_file({"model.diffusion_model.out.0.weight": torch.zeros(4)}, str(lora_dir / "not_a_lora.safetensors"))
    return make_demo_engine(data), lora_dir


def image():
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8"), "RGB")


def run(engine, prompt, **kw):
    req = Img2ImgRequest(init_image=image(), prompt=prompt, width=64, height=64, steps=4, seed=7,
                         save_images=False, **kw)
    return engine.img2img(req)


def pixels(result):
    return np.asarray(result.images[0], dtype=np.int16)


def unet_weights(engine):
    return {k: v.clone() for k, v in engine.models.current.components.unet.state_dict().items()}


def test_weight_zero_is_bit_identical_weight_one_changes_and_two_compose(setup):
    engine, _ = setup
    plain = pixels(run(engine, "a red barn"))
    zero = run(engine, "a red barn <lora:detail:0>")
    assert engine.models.loras.loaded_adapters()  # the adapter is on the model, at weight 0
    assert np.array_equal(pixels(zero), plain)
    one = pixels(run(engine, "a red barn <lora:detail:1>"))
    assert not np.array_equal(one, plain)
    other = pixels(run(engine, "a red barn <lora:style:1>"))
    both = pixels(run(engine, "a red barn <lora:detail:1> <lora:style:1>"))
    assert len(engine.models.loras.loaded_adapters()) == 2
    assert not np.array_equal(both, one) and not np.array_equal(both, other)
    # the same run again reuses the adapters and gives the same pixels
    assert np.array_equal(pixels(run(engine, "a red barn <lora:detail:1> <lora:style:1>")), both)
    # the tag is text only: where it sits in the prompt does not matter
    assert np.array_equal(pixels(run(engine, "<lora:style:1>a red barn <lora:detail:1> ")), both)


def test_text_encoder_and_unet_weights_apart(setup):
    engine, _ = setup
    plain = pixels(run(engine, "a red barn"))
    te_only = pixels(run(engine, "a red barn <lora:detail:1:0>"))
    unet_only = pixels(run(engine, "a red barn <lora:detail:0:1>"))
    both = pixels(run(engine, "a red barn <lora:detail:1:1>"))
    assert len({a.tobytes() for a in (plain, te_only, unet_only, both)}) == 4
    # a LoRA with text-encoder layers only composes with one that has both
    assert not np.array_equal(pixels(run(engine, "a red barn <lora:te_only:1> <lora:detail:1>")), both)


def test_unloading_restores_the_original_weights_exactly(setup):
    engine, _ = setup
    run(engine, "a red barn")
    before = unet_weights(engine)
    plain = pixels(run(engine, "a red barn"))
    run(engine, "a red barn <lora:detail:1> <lora:style:0.5>")
    run(engine, "a red barn <lora:style:1>")  # detail is taken off, style stays
    assert len(engine.models.loras.loaded_adapters()) == 1
    result = run(engine, "a red barn")  # no LoRA: every LoRA layer is removed
    assert engine.models.loras.loaded_adapters() == {}
    after = unet_weights(engine)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert not any("lora" in name for name, _ in engine.models.current.components.unet.named_modules())
    assert np.array_equal(pixels(result), plain)


def test_infotext_records_lora_hashes_and_keeps_the_tags(setup):
    engine, lora_dir = setup
    prompt = "a red barn <lora:detail_alias:0.8>, <lora:style:1>"
    result = run(engine, prompt)
    digest = addnet_hash(lora_dir / "detail.safetensors")[:12]
    with open(lora_dir / "detail.safetensors", "rb") as handle:  # kohya's hash: the bytes after the header
        handle.seek(8 + int.from_bytes(handle.read(8), "little"))
        assert hashlib.sha256(handle.read()).hexdigest()[:12] == digest
    style = addnet_hash(lora_dir / "sub" / "style.safetensors")[:12]
    parsed = parse_infotext(result.infotexts[0])
    assert parsed["Prompt"] == prompt  # PNG Info pastes the tags back as written
    assert parsed["Lora hashes"] == f"detail_alias: {digest}, style: {style}"
    assert result.prompt == prompt


def test_unknown_name_is_a_notice_and_the_run_goes_on(setup):
    engine, _ = setup
    plain = pixels(run(engine, "a red barn"))
    result = run(engine, "a red barn<lora:nowhere:1>")
    assert any("LoRA not found: 'nowhere'" in n for n in result.notices)
    assert np.array_equal(pixels(result), plain)
    assert "Lora hashes" not in parse_infotext(result.infotexts[0])
    other = run(engine, "a red barn<hypernet:h:1>")
    assert any("'hypernet' extra networks are not supported" in n for n in other.notices)


@pytest.mark.parametrize("name, message", [
    ("xl_lora", "xl_lora.safetensors: a LoRA for SDXL"),
    ("sd2_lora", r"sd2_lora.safetensors: layer .* has shape .*another model family"),
    ("not_a_lora", "not_a_lora.safetensors: not a LoRA"),
])
def test_a_file_for_another_model_is_an_error_naming_it(setup, name, message):
    engine, _ = setup
    with pytest.raises(RequestError, match=message) as err:
        run(engine, f"a red barn <lora:{name}:1>")
    assert err.value.field == "prompt"
    # the model is usable afterwards, without LoRA
    plain = run(engine, "a red barn")
    assert engine.models.loras.loaded_adapters() == {} and plain.images


def test_a_checkpoint_switch_drops_the_adapters(tmp_path):
    write_kohya_lora(tmp_path / "models" / "Lora" / "detail.safetensors")
    engine = make_demo_engine(tmp_path)
    run(engine, "x <lora:detail:1>")
    assert engine.models.loras.loaded_adapters()
    engine.models.unload()
    assert engine.models.loras.loaded_adapters() == {}
    engine.models.load(None)
    fresh = make_demo_engine(tmp_path / "other")
    assert np.array_equal(pixels(run(engine, "x")), pixels(run(fresh, "x")))
    assert np.array_equal(pixels(run(engine, "x <lora:detail:1>")), pixels(run(engine, "x <lora:detail:1>")))
