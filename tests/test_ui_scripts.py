"""The Script dropdown's glue without a browser: widget values -> params dataclasses, infotext -> script
controls, the tab -> script rule, the Generate job, the Interrogate CLIP handler, and the built app."""

import dataclasses

import gradio as gr
import pytest
from PIL import Image

import app
from pipelines.fields import MaskedContent, RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.launch_flags import parse_flags
from pipelines.models.interrogate import Interrogator, InterrogatorUnavailable
from scripts.loopback import AppendInterrogation, DenoisingCurve, LoopbackParams
from scripts.outpainting_mk2 import OutpaintingMk2Params
from scripts.outpainting_poor_man import PoorManOutpaintingParams
from scripts.script_values import (
    ALL_CONTROLS,
    NO_SCRIPT,
    SCRIPT_CHOICES,
    SCRIPT_SPECS,
    params_from_values,
    script_for_tab,
    script_from_infotext,
    split_values,
)
from scripts.sd_upscale import SdUpscaleParams
from ui import tab_scripts
from ui.interrogate_button import active_image, interrogate_prompt
from ui.modes import ModeTab
from ui.output_panel import Results
from ui.scripts_panel import ScriptsPanel, build_scripts_panel, paste_script
from ui.values import fields_from_infotext

LOOPBACK, MK2, POOR_MAN, SD_UPSCALE = "Loopback", "Outpainting mk2", "Poor man's outpainting", "SD upscale"


def defaults(title):
    spec = SCRIPT_SPECS[title]
    return {c.name: spec.default(c.name) for c in spec.controls}


# 1. Widget values -> params ---------------------------------------------------------------------------------
def test_the_dropdown_lists_the_scripts_in_a1111_order():
    assert SCRIPT_CHOICES == (NO_SCRIPT, LOOPBACK, MK2, POOR_MAN, SD_UPSCALE)


@pytest.mark.parametrize("title, params_type", [(LOOPBACK, LoopbackParams), (MK2, OutpaintingMk2Params),
                                                (POOR_MAN, PoorManOutpaintingParams),
                                                (SD_UPSCALE, SdUpscaleParams)])
def test_controls_come_from_the_params_dataclass_and_its_defaults(title, params_type):
    spec = SCRIPT_SPECS[title]
    assert sorted([c.name for c in spec.controls] + list(spec.hidden)) == sorted(
        f.name for f in dataclasses.fields(params_type))
    # The widgets' defaults, read back, are the dataclass's own defaults.
    assert params_from_values(title, defaults(title)) == params_type()


def test_control_ranges_match_a1111():
    loop, poor, mk2, up = (SCRIPT_SPECS[t] for t in (LOOPBACK, POOR_MAN, MK2, SD_UPSCALE))
    loops = loop.control("loops")
    assert (loops.minimum, loops.maximum, loops.step, loop.default("loops")) == (1, 32, 1, 4)
    assert loop.default("final_denoising_strength") == 0.5
    assert loop.control("denoising_curve").choices == ("Aggressive", "Linear", "Lazy")
    assert loop.default("denoising_curve") == "Linear"
    assert loop.control("append_interrogation").choices == ("None", "CLIP")
    # One "Color correction" on the page (issue 10): the parameter panel's, which Loopback honours.
    assert [c.name for c in loop.controls if c.name == "color_correction"] == []
    assert loop.hidden == ("color_correction",) and loop.default("color_correction") is False
    pixels = poor.control("pixels")
    assert (pixels.minimum, pixels.maximum, pixels.step, poor.default("pixels")) == (8, 256, 8, 128)
    assert poor.default("mask_blur") == 4 and poor.default("masked_content") == "fill"
    assert poor.control("masked_content").choices == ("fill", "original", "latent noise", "latent nothing")
    assert poor.default("directions") == ["left", "right", "up", "down"]
    assert "denoising and CFG at max, 50-100 steps, Euler a or DPM2 a" in poor.hint
    assert (mk2.default("pixels"), mk2.default("mask_blur"), mk2.default("noise_q"),
            mk2.default("color_variation")) == (128, 8, 1.0, 0.05)
    assert "80-100" in mk2.hint and "Euler a" in mk2.hint and "0.8" in mk2.hint
    overlap, scale = up.control("overlap"), up.control("scale")
    assert (overlap.minimum, overlap.maximum, overlap.step, up.default("overlap")) == (0, 256, 16, 64)
    assert (scale.minimum, scale.maximum, up.default("scale"), up.default("upscaler")) == (1, 4, 2.0, "None")
    assert up.hint == ("Will upscale the image by the selected scale factor; use width and height sliders to "
                       "set tile size")


def test_slider_values_become_the_dataclass_types():
    params = params_from_values(LOOPBACK, {**defaults(LOOPBACK), "loops": 2.0, "denoising_curve": "Lazy"})
    assert params == LoopbackParams(loops=2, denoising_curve=DenoisingCurve.LAZY, color_correction=False)
    assert type(params.loops) is int
    up = params_from_values(SD_UPSCALE, {"overlap": 16.0, "scale": 2, "upscaler": "Lanczos"})
    assert up == SdUpscaleParams(16, "Lanczos", 2.0) and type(up.overlap) is int and type(up.scale) is float
    poor = params_from_values(POOR_MAN, {"pixels": 64, "mask_blur": 4, "masked_content": "latent noise",
                                         "directions": ["up", "left"]})
    assert poor.masked_content is MaskedContent.LATENT_NOISE and poor.directions == ("left", "up")
    mk2 = params_from_values(MK2, {**defaults(MK2), "directions": ["right"], "noise_q": 0.5})
    assert mk2 == OutpaintingMk2Params(directions=("right",), noise_q=0.5)


@pytest.mark.parametrize("title, change, message", [
    (LOOPBACK, {"loops": 40}, "Loopback: loops 40 is outside 1..32"),
    (LOOPBACK, {"loops": 2.5}, "Loopback: Loops 2.5 is not a whole number"),
    (LOOPBACK, {"final_denoising_strength": None}, "Loopback: Final denoising strength is empty"),
    (SD_UPSCALE, {"overlap": "x"}, "SD upscale: Tile overlap 'x' is not a number"),
    (POOR_MAN, {"directions": []}, "choose at least one direction of left, right, up, down"),
    (MK2, {"pixels": 300}, "pixels to expand 300 is outside 8..256"),
])
def test_bad_values_are_loud_errors(title, change, message):
    with pytest.raises(RequestError) as exc:
        params_from_values(title, {**defaults(title), **change})
    assert exc.value.field == "script_args" and message in exc.value.message


def panel_values(title, **changes):
    """[dropdown, every control] as the generate handler receives them."""
    values = {(t, c.name): SCRIPT_SPECS[t].default(c.name) for t, c in ALL_CONTROLS}
    values.update({(title, name): value for name, value in changes.items()})
    return [title, *(values[(t, c.name)] for t, c in ALL_CONTROLS)]


def test_split_values_picks_the_chosen_scripts_controls():
    assert split_values([]) == (NO_SCRIPT, {})
    assert split_values(panel_values(NO_SCRIPT)) == (NO_SCRIPT, {})
    title, values = split_values(panel_values(SD_UPSCALE, overlap=32))
    assert title == SD_UPSCALE and values == {"overlap": 32, "scale": 2.0, "upscaler": "None"}
    with pytest.raises(ValueError, match="script control values"):
        split_values([LOOPBACK, 1, 2])


# 2. Infotext -> script controls -----------------------------------------------------------------------------
def test_loopback_infotext_selects_loopback_and_restores_its_controls():
    text = ("a fox\nSteps: 3, Seed: 5, Denoising strength: 0.75, Final denoising strength: 0.3, "
            "Denoising curve: Aggressive, Color correction: True, Version: x")
    updates = script_from_infotext(parse_infotext(text))
    assert updates.title == LOOPBACK and not updates.warnings
    assert updates.values == {(LOOPBACK, "final_denoising_strength"): 0.3,
                              (LOOPBACK, "denoising_curve"): "Aggressive"}
    # "Color correction: True" goes to the parameter panel's one checkbox, which Loopback honours
    assert fields_from_infotext(parse_infotext(text)).values["color_correction"] is True


def test_sd_upscale_infotext_restores_overlap_and_a_known_upscaler():
    text = "p\nSteps: 3, Seed: 5, Size: 64x64, SD upscale overlap: 32, SD upscale upscaler: lanczos"
    updates = script_from_infotext(parse_infotext(text), ["None", "Lanczos", "Nearest"])
    assert updates.title == SD_UPSCALE
    assert updates.values == {(SD_UPSCALE, "overlap"): 32, (SD_UPSCALE, "upscaler"): "Lanczos"}
    missing = script_from_infotext(parse_infotext(text.replace("lanczos", "4x-UltraSharp")), ["None"])
    assert missing.values == {(SD_UPSCALE, "overlap"): 32}
    assert missing.warnings == ["SD upscale upscaler: '4x-UltraSharp' is not installed here; known: None"]


def test_bad_or_absent_script_keys():
    bad = script_from_infotext(parse_infotext(
        "p\nSteps: 3, Seed: 5, Final denoising strength: lots, Denoising curve: Wavy, "
        "SD upscale overlap: 999"))
    assert bad.warnings == ["Final denoising strength: 'lots' is not a number",
                            "Denoising curve: 'Wavy' is not one of Aggressive, Linear, Lazy",
                            "SD upscale overlap: 999 is outside 0..256"]
    # Outpainting writes only the usual inpaint keys: they do not name a script.
    plain = script_from_infotext(parse_infotext("p\nSteps: 3, Seed: 5, Mask blur: 8, Masked content: fill"))
    assert plain.title is None and plain.values == {}


# 3. Sub-tabs -> script --------------------------------------------------------------------------------------
def test_script_tabs_pick_their_script_and_plain_tabs_undo_only_that():
    outpaint = tab_scripts.TAB_SCRIPTS["outpaint"]
    assert tab_scripts.TAB_SCRIPTS["loopback"][0] == LOOPBACK
    assert tab_scripts.TAB_SCRIPTS["sd_upscale"][0] == SD_UPSCALE
    assert script_for_tab(outpaint[0], NO_SCRIPT, False, outpaint[1]) == (POOR_MAN, NO_SCRIPT)
    assert script_for_tab(outpaint[0], MK2, False, outpaint[1]) == (None, False)  # the user's choice stays
    assert script_for_tab(SD_UPSCALE, LOOPBACK, False) == (SD_UPSCALE, LOOPBACK)
    assert script_for_tab(None, SD_UPSCALE, NO_SCRIPT) == (NO_SCRIPT, False)  # set by a tab: undone
    assert script_for_tab(None, SD_UPSCALE, True) == (NO_SCRIPT, False)
    assert script_for_tab(None, SD_UPSCALE, False) == (None, False)  # chosen in the dropdown: kept


def test_visiting_other_tabs_never_loses_the_users_script_choice():
    """Issue 10: the Script the user chose survives a visit to a script tab and back, and a visit to the tab
    of the script already chosen pins nothing."""
    assert script_for_tab(LOOPBACK, LOOPBACK, False) == (None, False)  # Loopback chosen, Loopback tab visited
    assert script_for_tab(None, LOOPBACK, False) == (None, False)  # back on img2img: still Loopback
    title, pinned = script_for_tab(LOOPBACK, SD_UPSCALE, False)  # SD upscale chosen, Loopback tab visited
    assert title == LOOPBACK
    title, pinned = script_for_tab(SD_UPSCALE, LOOPBACK, pinned)  # then the SD upscale tab
    assert title == SD_UPSCALE
    assert script_for_tab(None, SD_UPSCALE, pinned) == (SD_UPSCALE, False)  # back: the user's own choice


def test_paste_picks_the_target_tabs_script_else_the_infotexts(tmp_path):
    text = "p\nSteps: 3, Seed: 5, Final denoising strength: 0.3, Denoising curve: Lazy"
    tabs = tab_scripts.TAB_SCRIPTS
    keys = [(t, c.name) for t, c in ALL_CONTROLS]

    def paste(infotext, target, current=NO_SCRIPT, pinned=False):
        title, pinned, *controls = paste_script(panel(tmp_path), infotext, target, current, pinned, tabs)
        return title, pinned, {k: v for k, v in zip(keys, controls) if v != gr.skip()}

    title, pinned, controls = paste(text, "img2img")
    assert (title, pinned) == (LOOPBACK, False)
    assert controls == {(LOOPBACK, "final_denoising_strength"): 0.3, (LOOPBACK, "denoising_curve"): "Lazy"}
    title, pinned, controls = paste(text, "sd_upscale")  # the tab's own script; Loopback's values kept
    assert (title, pinned) == (SD_UPSCALE, NO_SCRIPT) and len(controls) == 2
    plain = "p\nSteps: 3, Seed: 5, Size: 64x64"
    assert paste(plain, "sketch", SD_UPSCALE, True) == (NO_SCRIPT, False, {})  # a tab had set it
    assert paste(plain, "sketch", SD_UPSCALE, False) == (gr.skip(), False, {})  # the user had chosen it
    assert paste("", "outpaint", MK2, False) == (gr.skip(), False, {})


# 4. The Generate job ----------------------------------------------------------------------------------------
class EchoEngine:
    def __init__(self, outputs_root):
        self.outputs_root, self.calls = outputs_root, []

    def img2img(self, request, on_progress=None, control=None):
        self.calls.append(request)
        sources = request.batch_images or (request.init_image,)
        images = [s.convert("RGB").resize((request.width, request.height)) for s in sources]
        return GenerationResult(images=images, seeds=[request.seed] * len(images), subseeds=[0] * len(images),
                                infotexts=["x"] * len(images))


class FakeInterrogator:
    def __init__(self, ok=True, reason="ready", caption="a blue square", error=None):
        self.ok, self.reason, self.caption, self.error, self.images = ok, reason, caption, error, []

    def available(self):
        return self.ok, self.reason

    def interrogate(self, image):
        if self.error:
            raise self.error
        self.images.append(image)
        return self.caption


def request(**kw):
    return Img2ImgRequest(**{"init_image": Image.new("RGB", (64, 64), "blue"), "width": 64, "height": 64,
                             "steps": 2, "seed": 7, "save_images": False, "prompt": "p", **kw})


def panel(tmp_path, interrogator=None):
    return ScriptsPanel(None, {}, {}, None, None, tmp_path, interrogator)


def test_job_runs_img2img_without_a_script_and_the_script_with_one(tmp_path):
    engine = EchoEngine(tmp_path)
    result = panel(tmp_path).job(engine, request(), [])(None, None)
    assert len(engine.calls) == 1 and len(result.images) == 1
    result = panel(tmp_path).job(engine, request(), panel_values(NO_SCRIPT))(None, None)
    assert len(engine.calls) == 2
    result = panel(tmp_path).job(engine, request(), panel_values(LOOPBACK, loops=2))(None, None)
    assert [c.seed for c in engine.calls[2:]] == [7, 8] and len(result.images) == 3  # 2 loops + grid
    result = panel(tmp_path).job(engine, request(), panel_values(SD_UPSCALE, overlap=0, upscaler="Lanczos"))(None, None)
    assert result.images[0].size == (128, 128) and len(engine.calls) == 8  # 2 x 2 tiles


def test_job_errors_name_the_control(tmp_path):
    with pytest.raises(gr.Error, match=r"Script \(script_args\): Loopback: loops 99 is outside 1..32"):
        panel(tmp_path).job(EchoEngine(tmp_path), request(), panel_values(LOOPBACK, loops=99))


def test_loopback_clip_uses_the_interrogator_and_says_why_it_cannot(tmp_path):
    engine = EchoEngine(tmp_path)
    values = panel_values(LOOPBACK, loops=1, append_interrogation="CLIP")
    panel(tmp_path, FakeInterrogator()).job(engine, request(), values)(None, None)
    assert engine.calls[0].prompt == "p, a blue square"
    missing = FakeInterrogator(ok=False, reason="put BLIP in models/BLIP")
    with pytest.raises(gr.Error, match="'CLIP' is unavailable. put BLIP in models/BLIP"):
        panel(tmp_path, missing).job(engine, request(), values)
    with pytest.raises(gr.Error, match="not set up"):
        panel(tmp_path, None).job(engine, request(), values)
    assert AppendInterrogation.CLIP.value == "CLIP"


# 5. Interrogate CLIP ----------------------------------------------------------------------------------------
def test_interrogate_fills_the_prompt_from_the_image_flattened_onto_white():
    fake = FakeInterrogator(caption="a cat, by Claude Monet")
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    assert interrogate_prompt(fake, clear) == "a cat, by Claude Monet"
    assert fake.images[0].mode == "RGB" and fake.images[0].getpixel((0, 0)) == (255, 255, 255)


def test_interrogate_without_an_image_warns_and_changes_nothing():
    fake = FakeInterrogator()
    with pytest.warns(UserWarning, match="No image in the Sketch tab"):
        result = interrogate_prompt(fake, None, "Sketch")
    assert isinstance(result, dict) and result.get("__type__") == "update" and not fake.images


def test_interrogate_with_missing_models_says_where_they_go(tmp_path):
    real = Interrogator(tmp_path / "BLIP", tmp_path / "CLIP")
    with pytest.raises(gr.Error) as exc:
        interrogate_prompt(real, Image.new("RGB", (16, 16)))
    assert "BLIP captioning model in" in exc.value.message and f"{tmp_path / 'BLIP'}/" in exc.value.message
    late = FakeInterrogator(error=InterrogatorUnavailable("CLIP weights are unreadable"))
    with pytest.raises(gr.Error, match="CLIP weights are unreadable"):
        interrogate_prompt(late, Image.new("RGB", (16, 16)))
    broken = FakeInterrogator(error=RuntimeError("out of memory"))
    with pytest.raises(gr.Error, match="Interrogate CLIP failed: RuntimeError: out of memory"):
        interrogate_prompt(broken, Image.new("RGB", (16, 16)))
    with pytest.raises(gr.Error, match="not set up"):
        interrogate_prompt(None, Image.new("RGB", (16, 16)))


def test_active_image_is_what_generate_would_use_or_the_widget_picture():
    image = Image.new("RGB", (8, 8))
    plain = ModeTab("img2img", "img2img", "t", None, inputs=["img"], read=lambda v: {"init_image": v},
                    image_input="img")
    assert active_image(plain, (image,)) is image
    assert active_image(plain, (None,)) is None

    def needs_a_mask(value, mask):
        raise RequestError("mask", "draw a mask first")

    inpaint = ModeTab("inpaint", "Inpaint", "t", None, inputs=["editor", "mask"], read=needs_a_mask,
                      image_input="editor")
    editor_value = {"background": image, "layers": [], "composite": image}
    assert active_image(inpaint, (editor_value, None)) is image


# 6. The built app -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    esrgan = data_dir / "models" / "ESRGAN"
    esrgan.mkdir(parents=True)
    (esrgan / "4x-Test.pth").write_bytes(b"")
    return app.create_app(parse_flags(["--data-dir", str(data_dir)]))


def by_elem_id(parts, elem_id):
    return next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def handler(parts, name, module=None):
    return next(f for f in parts.blocks.fns.values()
                if f.name == name and (module is None or f.fn.__module__ == module))


def test_the_panel_and_the_script_tabs_are_built(parts):
    dropdown = by_elem_id(parts, "script_list")
    assert dropdown.label == "Script" and dropdown.value == NO_SCRIPT
    assert [c[0] for c in dropdown.choices] == list(SCRIPT_CHOICES)
    assert by_elem_id(parts, "script_loopback_loops").value == 4
    append = by_elem_id(parts, "script_loopback_append_interrogation")
    assert append.interactive is False and "models/BLIP" in append.info  # no interrogator models here
    upscaler = by_elem_id(parts, "script_sd_upscale_upscaler")
    assert [c[0] for c in upscaler.choices] == ["None", "Lanczos", "Nearest", "4x-Test"]
    tabs = [b.label for b in parts.blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert {"Outpaint", "Loopback", "SD upscale"} <= set(tabs)
    buttons = {b.value for b in parts.blocks.blocks.values() if isinstance(b, gr.Button)}
    assert {"Interrogate CLIP", "Send to outpaint", "Send to loopback", "Send to SD upscale"} <= buttons
    generate_column = by_elem_id(parts, "img2img_generate").parent
    assert by_elem_id(parts, "img2img_interrogate").parent is generate_column


def call_values(parts, fn, overrides):
    """Every input of an event at its default, with overrides by elem_id (or by component)."""
    values = []
    for block in fn.inputs:
        key = getattr(block, "elem_id", None)
        if block in overrides:
            values.append(overrides[block])
        elif key in overrides:
            values.append(overrides[key])
        else:
            value = block.value
            values.append(value() if callable(value) else value)
    return values


def test_generate_with_a_script_in_the_app(parts):
    fn = handler(parts, "generate")
    mode_state = fn.inputs[0]
    source = Image.new("RGB", (64, 64), (30, 140, 200))
    base = {"img2img_image": source, "img2img_steps": 2, "img2img_width": 64, "img2img_height": 64,
            "img2img_seed": 11, "script_list": SD_UPSCALE, "script_sd_upscale_overlap": 0,
            "script_sd_upscale_upscaler": "Lanczos", mode_state: "img2img"}
    updates = list(fn.fn(*call_values(parts, fn, base)))
    texts = [u[4] for u in updates[1:-1]]
    assert any("tile " in t for t in texts), texts  # the script's own progress text is shown
    results = updates[-1][1]
    assert isinstance(results, Results) and [im.size for im in results.images] == [(128, 128)]
    info = parse_infotext(results.infotexts[0])
    assert (info["SD upscale overlap"], info["SD upscale upscaler"]) == ("0", "Lanczos")
    assert results.paths[0].exists() and Image.open(results.paths[0]).size == (128, 128)

    loop = {**base, "script_list": LOOPBACK, "script_loopback_loops": 2}
    last = list(fn.fn(*call_values(parts, fn, loop)))[-1]
    assert len(last[1].images) == 3 and last[4].startswith("Done: 3 images")  # 2 loops + the grid
    with pytest.raises(gr.Error, match="append interrogated prompt 'CLIP' is unavailable"):
        list(fn.fn(*call_values(parts, fn, {**loop, "script_loopback_append_interrogation": "CLIP"})))


def test_send_buttons_restore_the_script(parts):
    fn = handler(parts, "from_png_info", "ui.scripts_panel")
    text = "p\nSteps: 3, Seed: 5, Size: 64x64, SD upscale overlap: 32, SD upscale upscaler: Lanczos"
    image = Image.new("RGB", (8, 8))
    image.info["parameters"] = text
    values = fn.fn(image, NO_SCRIPT, False)
    controls = dict(zip([(t, c.name) for t, c in ALL_CONTROLS], values[2:]))
    assert values[:2] == [SD_UPSCALE, False]
    assert controls[(SD_UPSCALE, "overlap")] == 32 and controls[(SD_UPSCALE, "upscaler")] == "Lanczos"


def test_interrogate_button_in_the_app_without_models(parts):
    fn = handler(parts, "interrogate")
    assert fn.concurrency_limit == 1 and fn.concurrency_id == "gpu"
    values = call_values(parts, fn, {fn.inputs[0]: "img2img", "img2img_image": Image.new("RGB", (8, 8))})
    with pytest.raises(gr.Error, match="BLIP captioning model in"):
        fn.fn(*values)


def test_choosing_a_script_shows_its_controls_and_rechecks_clip(tmp_path):
    with gr.Blocks() as blocks:
        built = build_scripts_panel(tmp_path, FakeInterrogator(ok=False, reason="no BLIP in models/BLIP"))
    show = next(f.fn for f in blocks.fns.values() if f.name == "show")
    *groups, append = show(SD_UPSCALE)
    assert [g.visible for g in groups] == [t == SD_UPSCALE for t in SCRIPT_SPECS]
    assert append == gr.skip()
    *_, append = show(LOOPBACK)
    assert append.interactive is False and append.value == "None"
    assert append.info == "CLIP is unavailable: no BLIP in models/BLIP"
    built.interrogator = FakeInterrogator()  # models added since start-up: CLIP can be chosen now
    *_, append = show(LOOPBACK)
    assert append.interactive is True and append.info is None


def test_upscaler_refresh_lists_new_model_files(parts):
    refresh = handler(parts, "refresh", "ui.scripts_panel")
    (parts.settings.models_dir / "ESRGAN" / "2x-New.safetensors").write_bytes(b"")
    update = refresh.fn("Lanczos")
    assert [c[0] for c in update.choices] == ["None", "Lanczos", "Nearest", "2x-New", "4x-Test"]
    assert update.value == "Lanczos"
    assert refresh.fn("Gone").value == "None"
