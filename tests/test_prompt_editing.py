"""Prompt editing and alternation at the engine level: the embeddings the UNet sees at each step (captured with a
forward pre-hook on pipe.unet), for the prompt and the negative prompt, img2img and a 9-channel model; the
emphasis option through the request, the infotext, PNG Info's fields and the API's override_settings."""

import pytest
import torch
from demo_engine import make_demo_engine, make_nine_channel_engine
from pictures import blocky_picture

from pipelines.generation.conditioning import schedule_embeds
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.options import apply_options
from ui.values import fields_from_infotext


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


@pytest.fixture(scope="module")
def engine9(tmp_path_factory):
    return make_nine_channel_engine(tmp_path_factory.mktemp("data9"), preview_every=0)


def request(**kw):
    base = dict(init_image=blocky_picture(64, 64), prompt="a cat", width=64, height=64, steps=4, seed=3,
                save_images=False, denoising_strength=1.0, sampler_name="Euler")
    base.update(kw)
    return Img2ImgRequest(**base)


def unet_inputs(engine, req, kind="img2img"):
    """encoder_hidden_states of every UNet call of one run."""
    pipe = engine.models.pipeline(kind)
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].detach().clone())

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        result = engine.img2img(req)
    finally:
        handle.remove()
    return seen, result


def embeds(engine, text, kind="img2img"):
    pipe = engine.models.pipeline(kind)
    with torch.no_grad():
        return schedule_embeds(pipe.tokenizer, pipe.text_encoder, text, 1, torch.device("cpu")).at(0)[0]


def which(states, half, options):
    """For each UNet call: the name of the option whose embeddings the given CFG half holds."""
    names = []
    for state in states:
        rows = state.chunk(2)[half] if half is not None else state
        names.append(next(n for n, e in options.items() if torch.allclose(rows[0], e, atol=1e-5)))
    return names


def test_prompt_editing_switches_after_its_step(engine):
    states, _ = unet_inputs(engine, request(prompt="[a cat:a dog:2]"))
    cat, dog = embeds(engine, "a cat"), embeds(engine, "a dog")
    assert not torch.allclose(cat, dog)
    # A1111 counts the sampler's steps from 0: steps 0, 1 and 2 are "up to step 2".
    assert which(states, 1, {"cat": cat, "dog": dog}) == ["cat", "cat", "cat", "dog"]
    empty = embeds(engine, "")
    assert which(states, 0, {"empty": empty}) == ["empty"] * 4  # the negative half stays the empty prompt


def test_a_fraction_is_of_the_steps_that_run(engine):
    # 8 steps at strength 0.5: 5 steps run (A1111's t_enc + 1); 0.5 of them is step 2.
    states, _ = unet_inputs(engine, request(prompt="[a cat:a dog:0.5]", steps=8, denoising_strength=0.5))
    assert len(states) == 5
    assert which(states, 1, {"cat": embeds(engine, "a cat"), "dog": embeds(engine, "a dog")}) == \
        ["cat", "cat", "cat", "dog", "dog"]


def test_alternation_changes_every_step(engine):
    states, _ = unet_inputs(engine, request(prompt="a [cat|dog]", steps=5))
    names = which(states, 1, {"cat": embeds(engine, "a cat"), "dog": embeds(engine, "a dog")})
    assert names == ["cat", "cat", "dog", "cat", "dog"]  # A1111's step 0 and step 1 both use the first


def test_negative_prompt_editing_and_no_guidance(engine):
    states, _ = unet_inputs(engine, request(negative_prompt="[ugly::1]", steps=3))
    ugly, empty = embeds(engine, "ugly"), embeds(engine, "")
    assert which(states, 0, {"ugly": ugly, "empty": empty}) == ["ugly", "ugly", "empty"]
    # CFG scale 1: no negative half; the prompt still switches.
    states, _ = unet_inputs(engine, request(prompt="[a cat:a dog:1]", steps=3, cfg_scale=1.0))
    assert [s.shape[0] for s in states] == [1, 1, 1]
    assert which(states, None, {"cat": embeds(engine, "a cat"), "dog": embeds(engine, "a dog")}) == \
        ["cat", "cat", "dog"]


def test_a_longer_text_pads_every_text_of_its_schedule_and_the_other_side(engine):
    states, _ = unet_inputs(engine, request(prompt="[a cat:a dog BREAK x:1]", steps=3, batch_size=2))
    assert [tuple(s.shape[:2]) for s in states] == [(4, 154)] * 3  # A1111 pads a schedule's texts alike
    empty = embeds(engine, "")
    assert torch.equal(states[0][0, 77:], empty) and torch.equal(states[0][2, 77:], empty)  # negative, padded
    assert torch.equal(states[0][2, :77], embeds(engine, "a cat")) and torch.equal(states[0][3, 77:], empty)
    assert not torch.equal(states[2][3, 77:], empty)  # "x" after the switch


def test_inpainting_model_switches_too(engine9):
    states, _ = unet_inputs(engine9, request(prompt="[a cat:a dog:1]", steps=3), "inpaint")
    cat, dog = embeds(engine9, "a cat", "inpaint"), embeds(engine9, "a dog", "inpaint")
    assert which(states, 1, {"cat": cat, "dog": dog}) == ["cat", "cat", "dog"]


def test_same_seed_same_picture_with_editing(engine):
    one = engine.img2img(request(prompt="[a cat:a dog:2] (red:1.2)"))
    two = engine.img2img(request(prompt="[a cat:a dog:2] (red:1.2)"))
    assert list(one.images[0].getdata()) == list(two.images[0].getdata())


# The emphasis option: request, infotext, PNG Info, override_settings -----------------------------------------
def test_emphasis_mode_is_in_the_infotext_only_when_it_acts(engine):
    plain = engine.img2img(request(prompt="(a cat:1.2)", steps=1))
    assert "Emphasis" not in parse_infotext(plain.infotexts[0])
    nonorm = engine.img2img(request(prompt="(a cat:1.2)", steps=1, emphasis="no NORM"))
    params = parse_infotext(nonorm.infotexts[0])
    assert params["Emphasis"] == "No norm"
    assert fields_from_infotext(params).values["emphasis"] == "No norm"
    no_markup = engine.img2img(request(prompt="a cat", steps=1, emphasis="Ignore"))
    assert "Emphasis" not in parse_infotext(no_markup.infotexts[0])
    assert fields_from_infotext(parse_infotext(no_markup.infotexts[0])).values["emphasis"] == "Original"


def test_emphasis_option_reaches_the_request_and_is_checked():
    fields = set(Img2ImgRequest.__dataclass_fields__)
    assert apply_options({"emphasis": "ignore"}, fields).changes == {"emphasis": "Ignore"}
    with pytest.raises(Exception, match="emphasis"):
        request(emphasis="Loud").validate()
