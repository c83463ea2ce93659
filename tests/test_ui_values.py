"""The UI's pure glue: widget values -> Img2ImgRequest, infotext -> widget values, progress text, editor
values."""

import io
from types import SimpleNamespace

import pytest
from PIL import Image

from pipelines.fields import RequestError, ResizeMode
from pipelines.generation.infotext_params import generation_params
from pipelines.generation.progress import ProgressUpdate
from pipelines.generation.samplers import resolve_sampler
from pipelines.io.infotext import build_infotext, parse_infotext
from pipelines.models.components import CheckpointInfo
from ui.values import (
    FIELD_NAMES,
    RESIZE_BY,
    RESIZE_TO,
    SETTINGS_OPTIONS,
    describe_error,
    fields_from_infotext,
    finished_text,
    image_from_editor,
    progress_text,
    request_from_fields,
    scale_text,
)

DEFAULTS = {
    "prompt": "a fox", "negative_prompt": "blurry", "styles": [], "resize_mode": "Just resize",
    "sampler_name": "DPM++ 2M",  # A1111's UI default (Automatic: Karras)
    "scheduler": "Automatic", "steps": 20, "width": 512, "height": 512, "scale": 1.0, "n_iter": 1,
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "seed": -1, "show_extra": False,
    "subseed": -1, "subseed_strength": 0,
    # the inpaint controls (tests/test_ui_inpaint.py) and Color correction
    "mask_blur": 4, "mask_mode": "Inpaint masked", "masked_content": "original", "inpaint_area": "Whole picture",
    "only_masked_padding": 32, "mask_grow": 0, "soft_inpainting": False, "color_correction": False,
    # the Settings accordion: A1111's per-run options at their defaults (pipelines/options.py)
    **{option.field: option.default for option in SETTINGS_OPTIONS},
}


def image(size=(96, 64), color=(200, 80, 40)):
    return Image.new("RGB", size, color)


def test_defaults_cover_every_field():
    assert set(DEFAULTS) == set(FIELD_NAMES)


def test_widget_values_become_a_request():
    fields = dict(DEFAULTS, steps=4.0, width=64, height=72, seed=1234, cfg_scale=6.5, n_iter=2, batch_size=3,
                  resize_mode="Resize and fill", sampler_name="DPM++ 2M", scheduler="Karras")
    req = request_from_fields(fields, image())
    assert (req.prompt, req.negative_prompt) == ("a fox", "blurry")
    assert (req.width, req.height, req.steps, req.seed, req.cfg_scale) == (64, 72, 4, 1234, 6.5)
    assert isinstance(req.steps, int)
    assert (req.n_iter, req.batch_size) == (2, 3)
    assert req.resize_mode is ResizeMode.RESIZE_AND_FILL
    assert (req.sampler_name, req.scheduler) == ("DPM++ 2M", "Karras")
    assert req.init_image.size == (96, 64)


def test_resize_by_scales_the_image_size():
    req = request_from_fields(dict(DEFAULTS, scale=2.0, width=512, height=512), image((96, 64)), RESIZE_BY)
    assert (req.width, req.height) == (192, 128)
    req = request_from_fields(dict(DEFAULTS, scale=2.0, width=512, height=512), image((96, 64)), RESIZE_TO)
    assert (req.width, req.height) == (512, 512)


def test_variation_seed_only_counts_with_extra_ticked():
    fields = dict(DEFAULTS, subseed=77, subseed_strength=0.3)
    off = request_from_fields(fields, image())
    assert (off.subseed, off.subseed_strength) == (-1, 0.0)
    on = request_from_fields(dict(fields, show_extra=True), image())
    assert (on.subseed, on.subseed_strength) == (77, 0.3)


@pytest.mark.parametrize("field, value, fragment", [
    ("steps", 200, "Sampling steps (steps): 200 is outside 1..150"),
    ("steps", 4.5, "Sampling steps (steps): 4.5 is not a whole number"),
    ("seed", None, "Seed (seed): is empty"),
    ("width", 100, "Width (width): 100 is not a multiple of 8 in 64..2048"),
    ("denoising_strength", 1.5, "Denoising strength (denoising_strength): 1.5 is outside 0.0..1.0"),
    ("sampler_name", "Euler b", "Sampling method (sampler_name): unknown sampler 'Euler b'"),
    ("resize_mode", "Stretch", "Resize mode (resize_mode): 'Stretch' is not one of Just resize"),
])
def test_bad_values_name_field_value_and_range(field, value, fragment):
    with pytest.raises(RequestError) as err:
        request_from_fields(dict(DEFAULTS, **{field: value}), image())
    assert err.value.field == field
    assert fragment in describe_error(err.value)


def test_missing_image_is_reported_for_the_tab():
    with pytest.raises(RequestError) as err:
        request_from_fields(DEFAULTS, None, image_label="Sketch")
    assert err.value.field == "init_image"
    assert describe_error(err.value).startswith("Image: no image in the Sketch tab")


def test_corrupt_upload_is_a_request_error():
    buffer = io.BytesIO()
    image((256, 256)).save(buffer, format="PNG", compress_level=0)
    truncated = Image.open(io.BytesIO(buffer.getvalue()[:2000]))  # header fine, pixel data cut short
    with pytest.raises(RequestError) as err:
        request_from_fields(DEFAULTS, truncated)
    assert "not a readable image" in describe_error(err.value)


# Infotext -> fields -----------------------------------------------------------------------------------------
def infotext_for(fields, seed=1234, subseed=99):
    """What the engine writes for a request built from these widget values."""
    req = request_from_fields(fields, image())
    model = SimpleNamespace(info=CheckpointInfo("v1-5", None, "6ce0161689"), vae_hash=None, vae_name=None)
    params = generation_params(req, resolve_sampler(req.sampler_name, req.scheduler), model, seed, subseed)
    return build_infotext(req.prompt, req.negative_prompt, params)


def test_infotext_round_trips_through_the_fields():
    fields = dict(DEFAULTS, prompt="a fox, in snow: 1", steps=33, width=640, height=384, cfg_scale=8.5,
                  denoising_strength=0.42, sampler_name="DPM++ 2M", scheduler="Karras", seed=1234,
                  resize_mode="Crop and resize", show_extra=True, subseed=99, subseed_strength=0.25)
    updates = fields_from_infotext(parse_infotext(infotext_for(fields)))
    assert updates.warnings == []
    assert updates.resize_tab == RESIZE_TO
    for name in ("prompt", "negative_prompt", "steps", "width", "height", "cfg_scale", "denoising_strength",
                 "sampler_name", "scheduler", "seed", "resize_mode", "show_extra", "subseed",
                 "subseed_strength"):
        assert updates.values[name] == fields[name], name
    pasted = request_from_fields(dict(DEFAULTS, **updates.values), image())
    assert pasted == request_from_fields(dict(fields), pasted.init_image)


def test_defaults_the_engine_omits_are_pasted_back():
    text = infotext_for(dict(DEFAULTS, sampler_name="Euler a", scheduler="Automatic"))
    assert "Variation seed" not in text and "Resize mode" not in text
    assert "Schedule type: Automatic" in text  # A1111 always writes it (Euler a: the model's own sigmas)
    values = fields_from_infotext(parse_infotext(text)).values
    assert values["scheduler"] == "Automatic"
    assert values["subseed_strength"] == 0.0 and values["show_extra"] is False
    assert values["resize_mode"] == "Just resize"


def test_legacy_sampler_names_split_into_sampler_and_schedule():
    text = "cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512"
    values = fields_from_infotext(parse_infotext(text)).values
    assert (values["sampler_name"], values["scheduler"]) == ("DPM++ 2M", "Karras")


def test_unusable_values_are_reported_and_left_alone():
    text = "cat\nSteps: many, Sampler: Warp drive, CFG scale: 7, Seed: 1, Size: 512x512"
    updates = fields_from_infotext(parse_infotext(text))
    assert "steps" not in updates.values and "sampler_name" not in updates.values
    assert any("Steps" in w for w in updates.warnings)
    assert any("Warp drive" in w for w in updates.warnings)
    assert updates.values["cfg_scale"] == 7.0


def test_a_prompt_only_text_sets_only_the_prompts():
    updates = fields_from_infotext(parse_infotext("just a prompt"))
    assert updates.values == {"prompt": "just a prompt", "negative_prompt": ""}
    assert updates.resize_tab is None


# Progress, editor, notes ------------------------------------------------------------------------------------
def test_progress_text():
    update = ProgressUpdate(job=0, job_count=2, step=5, steps=15, elapsed=0.6)
    assert progress_text(update) == "step 5/15, batch 1/2, ETA 3s"
    nothing_yet = ProgressUpdate(0, 3, 0, 10, 0.0, text="tile 3/9")
    assert progress_text(nothing_yet) == "step 0/10, batch 1/3, tile 3/9, ETA --"
    assert progress_text(ProgressUpdate(0, 1, 1, 100, 2.0)) == "step 1/100, batch 1/1, ETA 3m 18s"


def test_finished_text():
    assert finished_text(2, 3.14, False, 0, []) == "Done: 2 images. Time taken: 3.1 s."
    assert finished_text(1, 1.0, True, 1, ["used X"]) == (
        "Interrupted: 1 image kept. Time taken: 1.0 s; 1 batch skipped.\nused X")


def test_editor_value_gives_the_composite():
    background = image((40, 30), (10, 20, 30))
    composite = image((40, 30), (255, 0, 0))
    blank = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    edited = {"background": background, "layers": [blank], "composite": composite}
    assert image_from_editor(edited) is composite
    assert image_from_editor({"background": background, "layers": [], "composite": None}) is background
    assert image_from_editor(None) is None


def test_an_untouched_empty_editor_has_no_image():
    blank = Image.new("RGBA", (800, 800), (0, 0, 0, 0))
    assert image_from_editor({"background": None, "layers": [blank], "composite": blank}) is None
    painted = blank.copy()
    painted.putpixel((5, 5), (255, 0, 0, 255))
    drawn = image_from_editor({"background": None, "layers": [painted], "composite": painted})
    assert drawn is painted  # a sketch on the empty canvas is a valid init image


def test_scale_text():
    assert scale_text((96, 64), 2.0) == "Resize by: from 96x64 to 192x128"
    assert "once it is known" in scale_text(None, 2.0)
