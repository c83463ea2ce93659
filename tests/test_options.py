"""A1111's options at the engine level (issue 9, points 8, 10, 3, 12): the option table, clip skip against
transformers' hidden states, inpainting_mask_weight on a 9-channel model, the background colour, the saved
format and folder, seeds of variation batches, the infotext's key order, an all-black mask."""

from pathlib import Path

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine, make_nine_channel_engine
from pictures import blocky_picture, box_mask
from PIL import Image

from pipelines.fields import InpaintArea, MaskedContent, MaskMode, RequestError
from pipelines.generation.conditioning import encode_conditioning
from pipelines.generation.engine import Engine, batch_seeds
from pipelines.generation.prompt_encoding import encode_token_ids
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext
from pipelines.options import BY_KEY, OPTIONS, apply_options, check_options, option_defaults, samples_dir

FIELDS = {f for f in Img2ImgRequest.__dataclass_fields__}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def engine9(tmp_path_factory):
    return make_nine_channel_engine(tmp_path_factory.mktemp("data9"))


def request(**kw):
    image = kw.pop("init_image", blocky_picture(64, 64))
    base = dict(init_image=image, prompt="a cat", width=64, height=64, steps=3, seed=11, save_images=False,
                denoising_strength=0.6, return_grid=False)  # the images themselves (grids: test_grids.py)
    base.update(kw)
    return Img2ImgRequest(**base)


def arr(image):
    return np.asarray(image, dtype=np.int16)


# 1. The option table ---------------------------------------------------------------------------------------
def test_defaults_are_a1111s():
    d = option_defaults()
    assert d["img2img_color_correction"] is False and d["img2img_fix_steps"] is False
    assert d["CLIP_stop_at_last_layers"] == 1 and d["inpainting_mask_weight"] == 1.0
    assert d["initial_noise_multiplier"] == 1.0 and d["img2img_background_color"] == "#ffffff"
    assert d["randn_source"] == "GPU" and d["eta_noise_seed_delta"] == 0 and d["eta_ancestral"] == 1.0
    assert d["samples_format"] == "png" and d["outdir_img2img_samples"] == "outputs/img2img-images"
    assert len({o.key for o in OPTIONS}) == len(OPTIONS)  # each option declared once


@pytest.mark.parametrize("key, value, message", [
    ("CLIP_stop_at_last_layers", 13, "13 is outside 1..12"),
    ("CLIP_stop_at_last_layers", 1.5, "is not a whole number"),
    ("inpainting_mask_weight", "x", "is not a number"),
    ("samples_format", "bmp", "'bmp' is not one of png, jpg, jpeg, webp"),
    ("img2img_background_color", "red", "is not a colour like #ffffff"),
    ("img2img_color_correction", "yes", "is not true or false"),
])
def test_bad_option_values_name_the_key(key, value, message):
    with pytest.raises(RequestError, match=message) as caught:
        check_options({key: value})
    assert caught.value.field == key


def test_check_options_canonicalises_and_keeps_unknown_keys():
    out = check_options({"samples_format": "WEBP", "img2img_background_color": "#F00", "my_ext": [1]})
    assert out == {"samples_format": "webp", "img2img_background_color": "#ff0000", "my_ext": [1]}


def test_apply_options_maps_fields_and_notices_the_rest(tmp_path):
    applied = apply_options({"CLIP_stop_at_last_layers": 2, "inpainting_mask_weight": 0.25, "s_churn": 0.5,
                             "eta_ddim": 0.0, "no_such_option": 1, "sd_model_checkpoint": "beta",
                             "outdir_img2img_samples": "mine", "samples_save": False},
                            FIELDS, data_dir=tmp_path)
    assert applied.changes["clip_skip"] == 2 and applied.changes["inpainting_mask_weight"] == 0.25
    assert applied.changes["outdir_samples"] == (tmp_path / "mine").resolve()
    assert applied.changes["save_images"] is False and applied.checkpoint == "beta"
    text = " | ".join(applied.notices)
    assert "s_churn = 0.5 is not applied" in text and "'no_such_option' is not an option" in text
    assert "eta_ddim" not in text  # the default: nothing to say


@pytest.mark.parametrize("value", ["../elsewhere", "/etc", "outputs/../../x"])
def test_output_folder_outside_the_data_dir_is_refused(tmp_path, value):
    with pytest.raises(RequestError, match="outside the data directory"):
        samples_dir(tmp_path / "data", value)


def test_output_folder_inside_the_data_dir(tmp_path):
    assert samples_dir(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()
    assert samples_dir(tmp_path, str(tmp_path / "c")) == (tmp_path / "c").resolve()


def test_every_field_the_table_names_is_a_request_field_or_noticed():
    missing = [o.key for o in OPTIONS if o.field and o.field not in FIELDS]
    applied = apply_options({key: _non_default(BY_KEY[key]) for key in missing}, FIELDS)
    assert len(applied.notices) == len(missing)


def _non_default(option):
    if option.kind == "choice":
        return option.choices[-1]
    return {"bool": not option.default, "int": (option.minimum or 0) + 1, "float": 0.5}[option.kind]


# 2. Clip skip ------------------------------------------------------------------------------------------------
def test_clip_skip_is_the_hidden_state_n_from_the_end_through_the_final_layer_norm(engine):
    pipe = engine.models.pipeline("img2img")
    enc, tok = pipe.text_encoder, pipe.tokenizer
    ids = torch.tensor([[tok.bos_token_id] + [5, 6, 7] + [tok.eos_token_id] * 73])
    with torch.no_grad():
        states = enc(ids, output_hidden_states=True).hidden_states
        expected = getattr(enc, "text_model", enc).final_layer_norm(states[-2])
        assert torch.equal(encode_token_ids(enc, ids, 2), expected)
        assert torch.equal(encode_token_ids(enc, ids, 1), enc(ids)[0])
        one = encode_conditioning(tok, enc, "a cat", "", 4, torch.device("cpu"), clip_skip=1).positive.at(0)
        two = encode_conditioning(tok, enc, "a cat", "", 4, torch.device("cpu"), clip_skip=2).positive.at(0)
    assert not torch.allclose(one, two)
    with pytest.raises(RequestError, match="more than the text encoder"):
        encode_token_ids(enc, ids, len(states))


def test_clip_skip_changes_the_picture_and_is_in_the_infotext(engine):
    one = engine.img2img(request())
    two = engine.img2img(request(clip_skip=2))
    assert np.abs(arr(one.images[0]) - arr(two.images[0])).max() > 0
    assert "Clip skip" not in parse_infotext(one.infotexts[0])
    assert parse_infotext(two.infotexts[0])["Clip skip"] == "2"


# 3. inpainting_mask_weight (9-channel conditioning) ------------------------------------------------------------
def test_mask_weight_blends_the_conditioning_picture(engine9):
    pipe = engine9.models.pipeline("inpaint")
    source = torch.rand(1, 3, 64, 64) * 2 - 1
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    masked = source * (mask < 0.5)

    def conditioning(weight):
        with pipe.noise(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), weight):
            pipe._source_pixels = source
            return pipe.prepare_mask_latents(mask, masked, 1, 64, 64, torch.float32, torch.device("cpu"), None,
                                             False)[1]

    from pipelines.models.vae_codec import encode_pixels
    assert torch.allclose(conditioning(1.0), encode_pixels(pipe.vae, masked, torch.device("cpu")))
    assert torch.allclose(conditioning(0.0), encode_pixels(pipe.vae, source, torch.device("cpu")), atol=1e-6)
    half = encode_pixels(pipe.vae, torch.lerp(source, masked, 0.5), torch.device("cpu"))
    assert torch.allclose(conditioning(0.5), half, atol=1e-6)


def test_mask_weight_changes_a_9_channel_run_and_is_recorded(engine9):
    image = blocky_picture(64, 64)
    base = dict(init_image=image, mask=box_mask(image.size, (16, 16, 47, 47)), mask_blur_x=0, mask_blur_y=0)
    full = engine9.img2img(request(**base))
    none = engine9.img2img(request(**base, inpainting_mask_weight=0.0))
    assert np.abs(arr(full.images[0]) - arr(none.images[0])).max() > 0
    assert parse_infotext(full.infotexts[0])["Conditional mask weight"] == "1"
    assert parse_infotext(none.infotexts[0])["Conditional mask weight"] == "0"


def test_no_mask_weight_key_on_a_4_channel_model(engine):
    assert "Conditional mask weight" not in parse_infotext(engine.img2img(request()).infotexts[0])


# 4. Background colour, saving ----------------------------------------------------------------------------------
def test_transparent_pixels_are_flattened_onto_the_background_colour(engine):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    red = request(init_image=rgba, background_color="#ff0000")
    flat = arr(Engine._resized_init_image(red, rgba))
    assert (flat[:, 40:] == [255, 0, 0]).all() and (flat[:, :30] == [0, 0, 255]).all()
    assert (arr(Engine._resized_init_image(request(init_image=rgba), rgba))[:, 40:] == 255).all()
    white, redder = engine.img2img(request(init_image=rgba)), engine.img2img(red)
    assert np.abs(arr(white.images[0]) - arr(redder.images[0])).max() > 0


def test_background_colour_in_inpainting(engine):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = engine.img2img(request(init_image=rgba, background_color="#00ff00", mask=box_mask((64, 64), (0, 0, 7, 7)),
                                 mask_blur_x=0, mask_blur_y=0))
    assert (arr(out.images[0])[32:, 32:] == [0, 255, 0]).all()  # outside the mask: the flattened original


@pytest.mark.parametrize("fmt, pil", [("jpg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_samples_format_and_folder(engine, tmp_path, fmt, pil):
    out = engine.img2img(request(save_images=True, samples_format=fmt, outdir_samples=tmp_path / "mine"))
    path = out.paths[0]
    assert path.suffix == f".{fmt}" and Path(tmp_path / "mine") in path.parents
    with Image.open(path) as saved:
        assert saved.format == pil and read_infotext(saved) == out.infotexts[0]


def test_bad_request_option_fields_are_refused():
    with pytest.raises(RequestError, match="clip_skip: 0 is outside 1..12"):
        request(clip_skip=0).validate()
    with pytest.raises(RequestError, match="samples_format"):
        request(samples_format="gif").validate()


# 5. Variation-seed batches (A1111 process_images) --------------------------------------------------------------
def test_batch_seeds_without_variation_step_both():
    req = request(batch_size=2, n_iter=2)
    assert [batch_seeds(req, 100, 500, job) for job in range(2)] == [([100, 101], [500, 501]),
                                                                      ([102, 103], [502, 503])]


def test_batch_seeds_with_variation_keep_the_seed():
    req = request(batch_size=2, n_iter=2, subseed_strength=0.3)
    assert [batch_seeds(req, 100, 500, job) for job in range(2)] == [([100, 100], [500, 501]),
                                                                      ([100, 100], [502, 503])]


def test_variation_batch_through_the_engine(engine):
    out = engine.img2img(request(batch_size=2, n_iter=2, seed=40, subseed=9, subseed_strength=0.5))
    assert out.seeds == [40, 40, 40, 40] and out.subseeds == [9, 10, 11, 12]
    infos = [parse_infotext(t) for t in out.infotexts]
    assert [i["Seed"] for i in infos] == ["40"] * 4 and [i["Variation seed"] for i in infos] == ["9", "10", "11", "12"]
    assert np.abs(arr(out.images[0]) - arr(out.images[1])).max() > 0  # the variation seed differs


# 6. Infotext key order ----------------------------------------------------------------------------------------
def test_inpaint_keys_in_a1111s_order(engine):
    image = blocky_picture(64, 64)
    out = engine.img2img(request(init_image=image, mask=box_mask(image.size, (16, 16, 47, 47)),
                                 mask_mode=MaskMode.INPAINT_NOT_MASKED, masked_content=MaskedContent.FILL,
                                 inpaint_area=InpaintArea.ONLY_MASKED, only_masked_padding=8, mask_blur_x=2,
                                 mask_blur_y=2, clip_skip=2))
    keys = list(parse_infotext(out.infotexts[0]))
    order = ["Seed", "Size-1", "Denoising strength", "Clip skip", "Mask mode", "Mask blur", "Inpaint area",
             "Masked area padding", "Masked content", "Version"]
    assert [k for k in keys if k in order] == order
    assert parse_infotext(out.infotexts[0])["Mask blur"] == "2"


def test_soft_inpainting_is_written_as_a1111_names_it(engine):
    image = blocky_picture(64, 64)
    out = engine.img2img(request(init_image=image, mask=box_mask(image.size, (16, 16, 47, 47)),
                                 soft_inpainting=True))
    assert parse_infotext(out.infotexts[0])["Soft inpainting enabled"] == "True"


# 7. An all-black mask ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("area", list(InpaintArea))
def test_all_black_mask_returns_the_picture_unchanged_with_a_notice(engine, area):
    image = blocky_picture(64, 64)
    out = engine.img2img(request(init_image=image, mask=Image.new("L", (64, 64), 0), inpaint_area=area,
                                 batch_size=2))
    assert len(out.images) == 2 and out.seeds == [11, 12]
    assert all(np.array_equal(arr(i), arr(image)) for i in out.images)
    assert any("mask is all black" in n and "unchanged" in n for n in out.notices)
    assert "Mask blur" in parse_infotext(out.infotexts[0])


def test_inverted_all_white_mask_is_the_same_no_op(engine):
    image = blocky_picture(64, 64)
    out = engine.img2img(request(init_image=image, mask=Image.new("L", (64, 64), 255),
                                 mask_mode=MaskMode.INPAINT_NOT_MASKED))
    assert np.array_equal(arr(out.images[0]), arr(image))
    assert any("inverted mask is all white" in n for n in out.notices)


def test_front_end_notices_reach_the_result(engine):
    out = engine.img2img(request(notices=("latent_mask is not applied by this engine; ignored",)))
    assert out.notices[0].startswith("latent_mask")
