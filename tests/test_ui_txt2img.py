"""The txt2img tab in-process (no browser): widget values -> request, infotext paste (Hires. fix included), the
built tab's A1111 labels and order, and its generate handler on the demo model."""

import gradio as gr
import pytest

import app
from pipelines.fields import RequestError
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from ui.output_panel import Results
from ui.tab_txt2img import hires_note
from ui.txt2img_values import (
    TXT2IMG_FIELDS,
    USE_SAME_SAMPLER,
    txt2img_fields_from_infotext,
    txt2img_request_from_fields,
)

UI_DEFAULTS = {"prompt": "a red fox", "negative_prompt": "", "styles": [], "sampler_name": "Euler a",
               "scheduler": "Automatic", "steps": 4, "width": 64, "height": 64, "n_iter": 1, "batch_size": 1,
               "cfg_scale": 7.0, "seed": 42, "show_extra": False, "subseed": -1, "subseed_strength": 0.0,
               "enable_hr": False, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "denoising_strength": 0.7,
               "hr_scale": 2.0, "hr_resize_x": 0, "hr_resize_y": 0, "hr_sampler_name": USE_SAME_SAMPLER,
               "hr_scheduler": "Use same scheduler", "hr_prompt": "", "hr_negative_prompt": ""}


def test_widget_values_make_a_validated_request():
    request = txt2img_request_from_fields(UI_DEFAULTS | {"enable_hr": True, "hr_scale": 1.5,
                                                         "show_extra": True, "subseed": 9, "subseed_strength": 0.3})
    assert request.enable_hr and request.hr_scale == 1.5 and request.hr_sampler_name is None
    assert request.output_size == (96, 96)
    assert (request.subseed, request.subseed_strength) == (9, 0.3)
    unticked = txt2img_request_from_fields(UI_DEFAULTS | {"subseed": 9, "subseed_strength": 0.3})
    assert (unticked.subseed, unticked.subseed_strength) == (-1, 0.0)  # A1111: "Extra" off = no variation
    with pytest.raises(RequestError) as err:
        txt2img_request_from_fields(UI_DEFAULTS | {"steps": 0})
    assert err.value.field == "steps"


def test_infotext_paste_fills_the_hires_fields():
    text = ("a castle\nNegative prompt: fog\nSteps: 12, Sampler: Euler, Schedule type: Karras, CFG scale: 5, "
            "Seed: 7, Size: 256x192, Model: x, Denoising strength: 0.45, Hires prompt: a big castle, "
            "Hires upscale: 1.5, Hires steps: 6, Hires upscaler: Latent (nearest), Version: v")
    updates = txt2img_fields_from_infotext(parse_infotext(text))
    values = updates.values
    assert values["enable_hr"] is True and values["hr_scale"] == 1.5 and values["hr_second_pass_steps"] == 6
    assert values["hr_upscaler"] == "Latent (nearest)" and values["denoising_strength"] == 0.45
    assert values["hr_prompt"] == "a big castle" and values["hr_sampler_name"] == USE_SAME_SAMPLER
    assert (values["width"], values["height"], values["seed"], values["scheduler"]) == (256, 192, 7, "Karras")
    assert set(values) <= set(TXT2IMG_FIELDS) and "resize_mode" not in values
    plain = txt2img_fields_from_infotext(parse_infotext("a cat\nSteps: 5, Sampler: Euler, Seed: 1, Size: 64x64"))
    assert plain.values["enable_hr"] is False


def test_hires_note_says_the_final_size():
    assert hires_note(512, 512, 2.0, 0, 0) == "from **512x512** to **1024x1024**"
    assert hires_note(512, 768, 2.0, 1024, 0) == "from **512x768** to **1024x1536**"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return app.create_app(parse_flags(["--data-dir", str(tmp_path_factory.mktemp("data"))]))


def by_id(parts, elem_id):
    return next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_tab_order_labels_and_defaults_are_a1111s(parts):
    tabs = [b for b in parts.blocks.blocks.values() if isinstance(b, gr.Tab) and b.id in ("txt2img", "img2img")]
    assert [t.id for t in tabs] == ["txt2img", "img2img"]  # A1111's order
    assert by_id(parts, "txt2img_sampling").value == "DPM++ 2M"
    assert by_id(parts, "txt2img_steps").value == 20
    assert by_id(parts, "txt2img_hr").label == "Hires. fix" and by_id(parts, "txt2img_hr").value is False
    upscalers = [c[0] for c in by_id(parts, "txt2img_hr_upscaler").choices]
    assert upscalers[:6] == ["Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                             "Latent (nearest)", "Latent (nearest-exact)"]
    assert {"None", "Lanczos", "Nearest"} <= set(upscalers)  # SD upscale's upscalers follow
    assert by_id(parts, "txt2img_denoising_strength").value == 0.7
    for button_id, label in (("txt2img_send_to_img2img", "Send to img2img"),
                             ("txt2img_send_to_inpaint", "Send to inpaint"),
                             ("pnginfo_send_to_txt2img", "Send to txt2img")):
        assert by_id(parts, button_id).value == label


def generate_args(parts, **fields):
    fn = next(f for f in parts.blocks.fns.values() if f.name == "generate_txt2img")
    values = UI_DEFAULTS | fields
    return fn.fn, [values[name] for name in TXT2IMG_FIELDS]


def test_generate_streams_progress_then_the_gallery_with_hires(parts):
    run, args = generate_args(parts, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, batch_size=2)
    updates = list(run(*args))
    assert any("batch 2/2" in str(u[4]) for u in updates[1:-1])  # the hires pass is the second job of the batch
    gallery, results, selected, infotext, text, _preview = updates[-1]
    assert isinstance(results, Results) and results.images[-1].size == (96, 96)
    assert results.seeds[-2:] == [42, 43] and selected == 0
    assert "Hires upscale: 1.5" in infotext and "Size: 64x64" in infotext
    assert text.startswith("Done: 2 images")
    assert all("txt2img-" in str(p) for p in results.paths)


def test_generate_errors_are_readable(parts):
    run, args = generate_args(parts, enable_hr=True, hr_upscaler="Nope")
    with pytest.raises(gr.Error, match="Upscaler: unknown upscaler 'Nope'"):
        list(run(*args))
    run, args = generate_args(parts, width=70)
    with pytest.raises(gr.Error, match="Width"):
        list(run(*args))
