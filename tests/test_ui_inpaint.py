"""The inpaint sub-tabs without a browser: ImageEditor values -> init image + mask, the inpaint controls ->
request fields, infotext -> control values, the built tabs and controls, and Generate / "Send to" on the demo
model."""

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

import app
from pipelines.fields import InpaintArea, MaskedContent, MaskMode, RequestError
from pipelines.generation.infotext_params import generation_params
from pipelines.generation.samplers import resolve_sampler
from pipelines.io.infotext import build_infotext, parse_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.components import CheckpointInfo
from ui import tab_inpaint, tab_inpaint_sketch, tab_inpaint_upload
from ui.generation import request_for
from ui.output_panel import Results
from ui.send_to import send_outputs
from ui.values import (
    FIELD_NAMES,
    INPAINT_AREA_CHOICES,
    INPAINT_FIELD_LABELS,
    MASK_MODE_CHOICES,
    MASKED_CONTENT_CHOICES,
    RESIZE_TO,
    describe_error,
    fields_from_infotext,
    inpaint_request_fields,
    request_from_fields,
)

FIELDS = {
    "prompt": "a fox", "negative_prompt": "", "resize_mode": "Just resize", "sampler_name": "Euler a",
    "scheduler": "Automatic", "steps": 4, "width": 64, "height": 64, "scale": 1.0, "n_iter": 1,
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "seed": 42, "show_extra": False,
    "subseed": -1, "subseed_strength": 0,
    "mask_blur": 4, "mask_mode": "Inpaint masked", "masked_content": "original", "inpaint_area": "Whole picture",
    "only_masked_padding": 32, "mask_grow": 0, "soft_inpainting": False, "color_correction": False,
}
SOURCE = (200, 80, 40)


def gradient(size=(64, 64)) -> Image.Image:
    """A picture where every pixel differs from its neighbours, so "unchanged" means something."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = (np.arange(w)[None, :] * 255 // max(1, w - 1)).astype(np.uint8)
    arr[..., 1] = (np.arange(h)[:, None] * 255 // max(1, h - 1)).astype(np.uint8)
    arr[..., 2] = 90
    return Image.fromarray(arr, "RGB")


def stroke_layer(size, box, alpha=178, color=(255, 255, 255)) -> Image.Image:
    """What the editor sends for a brush stroke: an RGBA layer, transparent except the painted box."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (*color, alpha)), box[:2])
    return layer


def mask_array(mask: Image.Image) -> np.ndarray:
    assert mask.mode == "L"
    return np.asarray(mask)


def box_mask(size, box) -> np.ndarray:
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[box[1]:box[3], box[0]:box[2]] = 255
    return arr


# 1. Inpaint: mask painted in the editor, or the upload's transparency ------------------------------------------
def test_painted_strokes_are_the_mask_and_the_background_is_the_init_image():
    background = Image.new("RGBA", (32, 24), (*SOURCE, 255))
    layer = stroke_layer((32, 24), (4, 6, 12, 10))
    layer.putpixel((20, 20), (255, 255, 255, 100))  # a faint fringe pixel (alpha <= 128) is not painted
    composite = Image.new("RGBA", (32, 24), (255, 255, 255, 255))
    out = tab_inpaint.read_inpaint({"background": background, "layers": [layer], "composite": composite})
    assert out["init_image"] is background  # the strokes are not part of the picture
    assert (mask_array(out["mask"]) == box_mask((32, 24), (4, 6, 12, 10))).all()


def test_the_brush_colour_does_not_matter_and_layers_add_up():
    size = (32, 24)
    black = stroke_layer(size, (0, 0, 4, 4), alpha=255, color=(0, 0, 0))
    white = stroke_layer(size, (10, 10, 14, 14), alpha=178)
    out = tab_inpaint.read_inpaint({"background": Image.new("RGB", size), "layers": [black, white],
                                    "composite": None})
    assert (mask_array(out["mask"]) == (box_mask(size, (0, 0, 4, 4)) | box_mask(size, (10, 10, 14, 14)))).all()


def test_a_layer_of_another_size_is_stretched_onto_the_image():
    layer = stroke_layer((16, 12), (0, 0, 8, 12))  # the left half
    out = tab_inpaint.read_inpaint({"background": Image.new("RGB", (32, 24)), "layers": [layer]})
    assert (mask_array(out["mask"]) == box_mask((32, 24), (0, 0, 16, 24))).all()


def test_no_strokes_on_a_transparent_upload_masks_its_transparent_pixels_by_alpha_only():
    background = Image.new("RGBA", (32, 24), (0, 0, 0, 255))  # opaque black: not masked, though black
    background.paste(Image.new("RGBA", (6, 4), (0, 0, 0, 0)), (2, 3))  # erased: transparent black
    background.paste(Image.new("RGBA", (5, 5), (250, 250, 250, 0)), (20, 10))  # erased: transparent white
    background.putpixel((30, 22), (10, 20, 30, 200))  # half-erased counts as erased
    empty_layer = Image.new("RGBA", (32, 24), (0, 0, 0, 0))
    out = tab_inpaint.read_inpaint({"background": background, "layers": [empty_layer], "composite": background})
    expected = box_mask((32, 24), (2, 3, 8, 7)) | box_mask((32, 24), (20, 10, 25, 15))
    expected[22, 30] = 255
    assert (mask_array(out["mask"]) == expected).all()
    assert out["init_image"] is background  # the engine flattens it onto white


def test_strokes_win_over_the_uploads_transparency():
    background = Image.new("RGBA", (32, 24), (0, 0, 0, 0))
    out = tab_inpaint.read_inpaint({"background": background, "layers": [stroke_layer((32, 24), (0, 0, 2, 2))]})
    assert (mask_array(out["mask"]) == box_mask((32, 24), (0, 0, 2, 2))).all()


def test_nothing_painted_on_an_opaque_upload_gives_an_empty_mask_for_the_engine_to_reject():
    out = tab_inpaint.read_inpaint({"background": Image.new("RGB", (32, 24)), "layers": [], "composite": None})
    assert out["mask"].size == (32, 24) and out["mask"].getbbox() is None


@pytest.mark.parametrize("value", [None, {}, {"background": None, "layers": [], "composite": None},
                                   {"background": None, "layers": [stroke_layer((8, 8), (0, 0, 4, 4))],
                                    "composite": Image.new("RGBA", (8, 8))}])
def test_no_upload_is_no_init_image(value):
    assert tab_inpaint.read_inpaint(value) == {"init_image": None}


def build_mode(module):
    with gr.Blocks():
        return module.build(parse_flags(["--data-dir", "/tmp"]))


def build_modes():
    with gr.Blocks():
        settings = parse_flags(["--data-dir", "/tmp"])
        return [m.build(settings) for m in (tab_inpaint, tab_inpaint_sketch, tab_inpaint_upload)]


def test_gradio_preprocess_keeps_the_alpha_the_mask_is_read_from(tmp_path):
    """Gradio's own conversion of the files the browser sends (image_mode="RGBA" keeps alpha everywhere)."""
    mode = build_mode(tab_inpaint)
    assert mode.masks and mode.image_input.transforms == ()  # no crop: the mask must stay on the picture
    background = Image.new("RGBA", (32, 24), (*SOURCE, 255))
    background.paste(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), (0, 0))
    paths = {"background": background, "layer": stroke_layer((32, 24), (10, 10, 20, 20)),
             "composite": Image.new("RGBA", (32, 24), (255, 255, 255, 255))}
    for name, img in paths.items():
        img.save(tmp_path / f"{name}.png")
    payload = mode.image_input.data_model(
        background=FileData(path=str(tmp_path / "background.png")),
        layers=[FileData(path=str(tmp_path / "layer.png"))], composite=FileData(path=str(tmp_path / "composite.png")))
    out = mode.read(mode.image_input.preprocess(payload))
    assert (mask_array(out["mask"]) == box_mask((32, 24), (10, 10, 20, 20))).all()
    assert out["init_image"].getpixel((0, 0))[3] == 0 and out["init_image"].getpixel((31, 23)) == (*SOURCE, 255)


# 2. Inpaint sketch: the changed pixels are the mask, the sketch is the init image ---------------------------
def sketch_value(size=(32, 24), box=(8, 8, 16, 16), color=(255, 0, 0)):
    background = gradient(size).convert("RGBA")
    composite = background.copy()
    composite.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (*color, 255)), box[:2])
    return {"background": background, "layers": [stroke_layer(size, box, 255, color)], "composite": composite}


def test_sketch_difference_is_the_mask_and_the_composite_the_init_image():
    value = sketch_value()
    out = tab_inpaint_sketch.read_inpaint_sketch(value, 0)
    assert (mask_array(out["mask"]) == box_mask((32, 24), (8, 8, 16, 16))).all()
    assert out["init_image"].mode == "RGB"
    assert np.array_equal(np.asarray(out["init_image"]), np.asarray(value["composite"].convert("RGB")))


def test_mask_transparency_lets_the_original_show_through_inside_the_mask():
    value = sketch_value()
    original = np.asarray(value["background"].convert("RGB"), np.float64)
    sketched = np.asarray(value["composite"].convert("RGB"), np.float64)
    for transparency in (25, 100):
        out = tab_inpaint_sketch.read_inpaint_sketch(value, transparency)
        init = np.asarray(out["init_image"], np.float64)
        inside = init[8:16, 8:16]
        expected = sketched[8:16, 8:16] * (1 - transparency / 100) + original[8:16, 8:16] * transparency / 100
        assert np.abs(inside - expected).max() <= 1.01, transparency
        assert np.array_equal(np.delete(init, range(8, 16), axis=0), np.delete(original, range(8, 16), axis=0))
        assert out["mask"].getbbox() == (8, 8, 16, 16)  # the mask stays whole


def test_sketch_on_a_transparent_upload_only_counts_real_paint():
    background = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    composite = Image.new("RGBA", (16, 16), (255, 255, 255, 0))  # other RGB under alpha 0: no change
    composite.putpixel((3, 4), (0, 0, 255, 255))
    out = tab_inpaint_sketch.read_inpaint_sketch({"background": background, "layers": [], "composite": composite})
    assert out["mask"].getbbox() == (3, 4, 4, 5)


def test_sketch_errors():
    value = sketch_value()
    value["composite"] = value["composite"].resize((16, 12))
    with pytest.raises(RequestError, match="the sketch is 16x12 but the image is 32x24") as err:
        tab_inpaint_sketch.read_inpaint_sketch(value, 0)
    assert err.value.field == "mask"
    with pytest.raises(RequestError, match="outside 0..100") as err:
        tab_inpaint_sketch.read_inpaint_sketch(sketch_value(), 101)
    assert describe_error(err.value).startswith("Mask transparency (mask_alpha)")
    assert tab_inpaint_sketch.read_inpaint_sketch(None, 0) == {"init_image": None}


def test_inpaint_sketch_tab_has_the_colour_brush_and_a_transparency_slider():
    mode = build_mode(tab_inpaint_sketch)
    editor, slider = mode.inputs
    assert mode.masks and editor is mode.image_input and isinstance(editor, gr.ImageEditor)
    assert editor.brush.color_mode == "defaults"  # any colour
    assert (slider.label, slider.minimum, slider.maximum, slider.value) == ("Mask transparency", 0, 100, 0)


# 3. Inpaint upload: image + separate mask --------------------------------------------------------------------
def test_upload_passes_image_and_mask_on():
    picture, mask = gradient((32, 24)), Image.new("L", (32, 24), 255)
    assert tab_inpaint_upload.read_inpaint_upload(picture, mask) == {"init_image": picture, "mask": mask}
    assert tab_inpaint_upload.read_inpaint_upload(None, mask) == {"init_image": None}


def test_upload_without_a_mask_says_so():
    with pytest.raises(RequestError, match="no mask in the Inpaint upload tab") as err:
        tab_inpaint_upload.read_inpaint_upload(gradient(), None)
    assert describe_error(err.value).startswith("Mask (mask): no mask")


def test_upload_mask_widget_keeps_transparency():
    mode = build_mode(tab_inpaint_upload)
    image, mask = mode.inputs
    assert mode.masks and mode.image_input is image
    assert (mask.label, mask.image_mode, image.image_mode) == ("Mask", "RGBA", "RGBA")


# 4. The controls -> request fields ---------------------------------------------------------------------------
def test_label_and_enum_mappings_follow_the_engine():
    assert MASK_MODE_CHOICES == ("Inpaint masked", "Inpaint not masked")
    assert MASKED_CONTENT_CHOICES == ("fill", "original", "latent noise", "latent nothing")
    assert INPAINT_AREA_CHOICES == ("Whole picture", "Only masked")
    for choices, kind in ((MASK_MODE_CHOICES, MaskMode), (MASKED_CONTENT_CHOICES, MaskedContent),
                          (INPAINT_AREA_CHOICES, InpaintArea)):
        assert [kind(i) for i in range(len(choices))] == list(kind)
    assert [m.label for m in MaskedContent] == list(MASKED_CONTENT_CHOICES)
    assert set(INPAINT_FIELD_LABELS) <= set(FIELD_NAMES)


def test_controls_become_request_fields():
    fields = dict(FIELDS, mask_blur=7.0, mask_mode="Inpaint not masked", masked_content="latent noise",
                  inpaint_area="Only masked", only_masked_padding=48, mask_grow=-3, soft_inpainting=True,
                  color_correction=True)
    req = request_from_fields(fields, gradient())
    assert (req.mask_blur_x, req.mask_blur_y) == (7, 7) and isinstance(req.mask_blur_x, int)
    assert req.mask_mode is MaskMode.INPAINT_NOT_MASKED
    assert req.masked_content is MaskedContent.LATENT_NOISE
    assert req.inpaint_area is InpaintArea.ONLY_MASKED
    assert (req.only_masked_padding, req.mask_grow, req.soft_inpainting, req.color_correction) == (48, -3, True, True)
    defaults = request_from_fields(FIELDS, gradient())
    assert (defaults.mask_blur_x, defaults.masked_content, defaults.inpaint_area, defaults.only_masked_padding) == (
        4, MaskedContent.ORIGINAL, InpaintArea.WHOLE_PICTURE, 32)


def test_a_caller_without_the_controls_gets_the_request_defaults():
    assert inpaint_request_fields({"steps": 4}) == {}


@pytest.mark.parametrize("name, value, fragment", [
    ("mask_blur", 65, "Mask blur (mask_blur_x): 65 is outside 0..64"),
    ("mask_blur", 2.5, "Mask blur (mask_blur): 2.5 is not a whole number"),
    ("masked_content", "blur", "Masked content (masked_content): 'blur' is not one of fill, original"),
    ("mask_mode", None, "Mask mode (mask_mode): None is not one of Inpaint masked, Inpaint not masked"),
    ("inpaint_area", "All", "Inpaint area (inpaint_area): 'All' is not one of Whole picture, Only masked"),
    ("only_masked_padding", 300, "Only masked padding, pixels (only_masked_padding): 300 is outside 0..256"),
    ("mask_grow", -65, "Mask grow/shrink (mask_grow): -65 is outside -64..64"),
])
def test_bad_control_values_name_field_value_and_range(name, value, fragment):
    with pytest.raises(RequestError) as err:
        request_from_fields(dict(FIELDS, **{name: value}), gradient())
    assert fragment in describe_error(err.value)


# 5. Infotext -> controls --------------------------------------------------------------------------------------
def inpaint_infotext(fields) -> str:
    """What the engine writes for an inpaint run built from these widget values."""
    req = request_from_fields(fields, gradient()).replace(mask=Image.new("L", (64, 64), 255))
    model = SimpleNamespace(info=CheckpointInfo("v1-5", None, "6ce0161689"), vae_hash=None, vae_name=None)
    params = generation_params(req, resolve_sampler(req.sampler_name, req.scheduler), model, 1234, 99)
    return build_infotext(req.prompt, req.negative_prompt, params)


@pytest.mark.parametrize("changes", [
    {},  # all defaults: only "Mask blur" is written, the rest is omitted and pasted back as defaults
    {"mask_blur": 9, "mask_mode": "Inpaint not masked", "masked_content": "latent nothing",
     "inpaint_area": "Only masked", "only_masked_padding": 64, "mask_grow": 5, "soft_inpainting": True,
     "color_correction": True},
    {"masked_content": "fill", "mask_grow": -8},
])
def test_inpaint_infotext_round_trips_through_the_controls(changes):
    fields = dict(FIELDS, **changes)
    text = inpaint_infotext(fields)
    assert "Mask blur: " in text
    updates = fields_from_infotext(parse_infotext(text))
    assert updates.warnings == []
    for name in INPAINT_FIELD_LABELS:
        assert updates.values[name] == fields[name], (name, text)


def test_a_plain_img2img_infotext_resets_the_inpaint_choices_but_not_the_blur():
    updates = fields_from_infotext(parse_infotext("a fox\nSteps: 4, Seed: 1, Size: 64x64"))
    assert updates.values["mask_mode"] == "Inpaint masked" and updates.values["masked_content"] == "original"
    assert updates.values["inpaint_area"] == "Whole picture" and updates.values["only_masked_padding"] == 32
    assert updates.values["soft_inpainting"] is False and updates.values["mask_grow"] == 0
    assert "mask_blur" not in updates.values


def test_a1111_infotext_variants():
    text = ("a fox\nSteps: 4, Seed: 1, Size: 64x64, Mask blur x: 3, Mask blur y: 5, Masked content: 2, "
            "Inpaint area: only masked, Masked area padding: 16, Soft inpainting: true")
    updates = fields_from_infotext(parse_infotext(text))
    assert updates.values["mask_blur"] == 3
    assert updates.warnings == ["Mask blur y: 5 differs from x (3); the one Mask blur slider takes 3"]
    assert (updates.values["masked_content"], updates.values["inpaint_area"]) == ("latent noise", "Only masked")
    assert (updates.values["only_masked_padding"], updates.values["soft_inpainting"]) == (16, True)


def test_unusable_inpaint_values_are_reported_and_left_alone():
    text = "a fox\nSteps: 4, Seed: 1, Mask blur: soft, Masked content: blur, Inpaint area: 7, Soft inpainting: maybe"
    updates = fields_from_infotext(parse_infotext(text))
    assert {"mask_blur", "masked_content", "inpaint_area", "soft_inpainting"}.isdisjoint(updates.values)
    assert len(updates.warnings) == 4, updates.warnings
    assert "Masked content: 'blur' is not one of fill, original, latent noise, latent nothing" in updates.warnings


# 6. The built app: tabs, controls, their visibility, Generate and "Send to" on the demo model ---------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return app.create_app(parse_flags(["--data-dir", str(tmp_path_factory.mktemp("data"))]))


def by_elem_id(parts, elem_id):
    return next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_inpaint_tabs_and_controls_match_a1111(parts):
    tabs = [b.label for b in parts.blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs.index("Sketch") < tabs.index("Inpaint") < tabs.index("Inpaint sketch") < tabs.index("Inpaint upload")
    blur = by_elem_id(parts, "img2img_mask_blur")
    assert (blur.label, blur.minimum, blur.maximum, blur.step, blur.value) == ("Mask blur", 0, 64, 1, 4)
    mode = by_elem_id(parts, "img2img_mask_mode")
    assert (mode.choices, mode.value) == ([(c, c) for c in MASK_MODE_CHOICES], "Inpaint masked")
    content = by_elem_id(parts, "img2img_inpainting_fill")
    assert (content.choices, content.value) == ([(c, c) for c in MASKED_CONTENT_CHOICES], "original")
    area = by_elem_id(parts, "img2img_inpaint_full_res")
    assert (area.choices, area.value) == ([(c, c) for c in INPAINT_AREA_CHOICES], "Whole picture")
    padding = by_elem_id(parts, "img2img_inpaint_full_res_padding")
    assert (padding.label, padding.minimum, padding.maximum, padding.step, padding.value) == (
        "Only masked padding, pixels", 0, 256, 4, 32)
    grow = by_elem_id(parts, "img2img_mask_grow")
    assert (grow.minimum, grow.maximum, grow.value) == (-64, 64, 0)
    assert by_elem_id(parts, "soft_inpainting_enabled").value is False
    assert by_elem_id(parts, "img2img_color_correction").value is False
    assert by_elem_id(parts, "img2img_inpaint_controls").visible is False  # img2img is the first sub-tab
    editor = by_elem_id(parts, "img2maskimg")
    assert editor.brush.color_mode == "fixed" and editor.eraser is not None
    buttons = {b.value for b in parts.blocks.blocks.values() if isinstance(b, gr.Button)}
    assert {"Send to inpaint", "Send to inpaint sketch", "Send to inpaint upload"} <= buttons


def visibility_handlers(parts):
    """(trigger elem_id, handler) of every event that shows or hides the inpaint controls."""
    group = by_elem_id(parts, "img2img_inpaint_controls")
    found = []
    for fn in parts.blocks.fns.values():
        if group in fn.outputs and len(fn.outputs) == 1:
            for block_id, _event in fn.targets:
                found.append((parts.blocks.blocks[block_id].elem_id, fn.fn))
    return found


def test_controls_show_on_the_inpaint_sub_tabs_only(parts):
    handlers = dict(visibility_handlers(parts))
    inpaint_tabs = {"img2img_inpaint_tab", "img2img_inpaint_sketch_tab", "img2img_inpaint_upload_tab"}
    for tab in inpaint_tabs | {"img2img_img2img_tab", "img2img_sketch_tab"}:
        assert handlers[tab]().visible is (tab in inpaint_tabs), tab
    results = Results([gradient()], ["x"], [1], [1], [])
    for name in ("inpaint", "inpaint_sketch", "inpaint_upload", "img2img", "sketch"):
        shown = name.startswith("inpaint")
        assert handlers[f"img2img_send_to_{name}"](results).visible is shown
        assert isinstance(handlers[f"img2img_send_to_{name}"](Results()), type(gr.skip()))  # nothing sent
        assert handlers[f"pnginfo_send_to_{name}"](gradient()).visible is shown
        assert isinstance(handlers[f"pnginfo_send_to_{name}"](None), type(gr.skip()))


def generate_args(parts, mode_name, editor_id, value, **fields):
    """The generate handler's arguments: every input's default, the active sub-tab, its widget's value and
    these fields."""
    inputs = next(f for f in parts.blocks.fns.values() if f.name == "generate").inputs
    args = [getattr(component, "value", None) for component in inputs]
    ids = [getattr(component, "elem_id", None) for component in inputs]
    args[0] = mode_name  # the mode state comes first
    args[ids.index(editor_id)] = value
    start = ids.index("img2img_prompt")
    for offset, name in enumerate(FIELD_NAMES):
        if name in fields:
            args[start + offset] = fields[name]
    return args


def generate(parts, *args):
    return list(next(f.fn for f in parts.blocks.fns.values() if f.name == "generate")(*args))


def test_generate_inpaints_inside_the_stroke_only(parts):
    source = gradient((64, 64)).convert("RGBA")
    value = {"background": source, "layers": [stroke_layer((64, 64), (16, 24, 48, 40))], "composite": source}
    args = generate_args(parts, "inpaint", "img2maskimg", value, mask_blur=0, steps=4, width=64, height=64,
                         seed=7, denoising_strength=1.0)
    _, results, _, infotext, text, *_ = generate(parts, *args)[-1]
    assert text.startswith("Done: 1 image")
    assert "Mask blur: 0" in infotext and "Seed: 7" in infotext
    out = np.asarray(Image.open(results.paths[0]).convert("RGB"), np.int16)
    diff = np.abs(out - np.asarray(source.convert("RGB"), np.int16)).max(axis=-1)
    inside = box_mask((64, 64), (16, 24, 48, 40)) > 0
    assert (diff[~inside] == 0).all()  # bit-identical outside the mask
    assert (diff[inside] > 0).mean() > 0.5


def test_generate_with_an_empty_mask_returns_the_picture_and_no_image_is_a_readable_error(parts):
    # Nothing painted: as A1111, the picture comes back unchanged (the finished text says why).
    empty = {"background": gradient((64, 64)), "layers": [Image.new("RGBA", (64, 64))], "composite": None}
    _, results, _, _, text, *_ = generate(parts, *generate_args(parts, "inpaint", "img2maskimg", empty, steps=4,
                                                                width=64, height=64))[-1]
    assert text.startswith("Done: 1 image") and "the mask is all black: there is nothing to inpaint" in text
    unchanged = np.asarray(results.images[0].convert("RGB"), np.int16)
    assert np.array_equal(unchanged, np.asarray(gradient((64, 64)).convert("RGB"), np.int16))
    with pytest.raises(gr.Error, match="no image in the Inpaint tab"):
        generate(parts, *generate_args(parts, "inpaint", "img2maskimg", None, steps=4))
    with pytest.raises(gr.Error, match="no mask in the Inpaint upload tab"):
        generate(parts, *generate_args(parts, "inpaint_upload", "img_inpaint_base", gradient(), steps=4))
    done = generate(parts, *generate_args(parts, "img2img", "img2img_image", gradient(), steps=4))[-1]
    assert done[4].startswith("Done: 1 image")  # the server goes on


def test_request_for_an_inpaint_sketch_tab():
    mode = next(m for m in build_modes() if m.name == "inpaint_sketch")
    req = request_for(mode, (sketch_value((64, 64), (8, 8, 24, 24)), 50), dict(FIELDS, masked_content="fill"),
                      RESIZE_TO)
    assert req.mask.getbbox() == (8, 8, 24, 24) and req.masked_content is MaskedContent.FILL
    assert req.init_image.getpixel((12, 12)) != (255, 0, 0)  # half original at 50 % transparency


INFOTEXT = ("a fox in snow\nSteps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 1234, Size: 64x64, "
            "Denoising strength: 0.4, Mask blur: 9, Mask mode: Inpaint not masked, Masked content: fill, "
            "Inpaint area: Only masked, Masked area padding: 48, Mask grow: -4, Soft inpainting: True, Version: x")


@pytest.mark.parametrize("name", ["inpaint", "inpaint_sketch", "inpaint_upload"])
def test_send_to_an_inpaint_tab_puts_the_image_there_and_pastes_the_inpaint_fields(name):
    target = next(m for m in build_modes() if m.name == name)
    image = gradient((96, 64))
    out = send_outputs(image, INFOTEXT, target, list(FIELD_NAMES), "img2img", 1.0, {})
    main_tabs, mode_tabs, mode_name, value, *rest = out
    assert (main_tabs.selected, mode_tabs.selected, mode_name) == ("img2img", target.tab_id, name)
    assert value is image
    fields = dict(zip(FIELD_NAMES, rest[:len(FIELD_NAMES)], strict=True))
    assert (fields["mask_blur"], fields["mask_mode"], fields["masked_content"]) == (9, "Inpaint not masked", "fill")
    assert (fields["inpaint_area"], fields["only_masked_padding"], fields["mask_grow"]) == ("Only masked", 48, -4)
    assert fields["soft_inpainting"] is True and fields["color_correction"] is False
    assert rest[len(FIELD_NAMES) + 2] == {name: (96, 64)}


def test_send_from_the_gallery_to_inpaint_fills_the_editor(parts):
    fn = next(f for f in parts.blocks.fns.values() if f.name == "from_gallery"
              and any(getattr(parts.blocks.blocks.get(t[0]), "elem_id", None) == "img2img_send_to_inpaint"
                      for t in f.targets))
    image = gradient((96, 64))
    out = fn.fn(Results([image], [INFOTEXT], [1234], [1], []), 0, 1.0, {})
    assert out[1].selected == "img2img_inpaint_tab" and out[2] == "inpaint" and out[3] is image
    editor = by_elem_id(parts, "img2maskimg")
    sent = editor.postprocess(out[3])  # what the browser receives: the picture as the background, no strokes
    assert sent.background is not None and sent.layers == []
