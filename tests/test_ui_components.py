"""UI building blocks without a browser: the color-sketch flag, PNG Info's upload path keeping the text chunk,
"Send to" outputs, and the worker-thread progress stream."""

import shutil
import threading

import gradio as gr
import pytest
from gradio.data_classes import FileData
from PIL import Image

from pipelines.generation.progress import ProgressUpdate
from pipelines.launch_flags import parse_flags
from ui import tab_img2img, tab_png_info, tab_sketch
from ui.generation import Finished, Progress, run_in_thread
from ui.modes import SKETCH_COLORS
from ui.send_to import send_outputs
from ui.values import FIELD_NAMES, RESIZE_TO

INFOTEXT = ("a fox in snow\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, "
            "CFG scale: 6.5, Seed: 1234, Size: 640x384, Model: m, Denoising strength: 0.4, "
            "Resize mode: Crop and resize, Version: x")


# 1. --gradio-img2img-tool -----------------------------------------------------------------------------------
def build_mode(module, *flags):
    with gr.Blocks():
        return module.build(parse_flags(["--data-dir", "/tmp", *flags]))


def test_color_sketch_flag_turns_the_img2img_input_into_a_colour_editor():
    mode = build_mode(tab_img2img, "--gradio-img2img-tool", "color-sketch")
    editor = mode.image_input
    assert isinstance(editor, gr.ImageEditor)
    assert editor.brush.colors == SKETCH_COLORS and editor.brush.color_mode == "defaults"  # palette + picker
    assert set(editor.sources) == {"upload", "clipboard"}
    background = Image.new("RGBA", (32, 24), (0, 0, 255, 255))
    composite = Image.new("RGBA", (32, 24), (255, 0, 0, 255))
    stroke = Image.new("RGBA", (32, 24), (255, 0, 0, 255))
    assert mode.read({"background": background, "layers": [stroke], "composite": composite}) == {
        "init_image": composite}


def test_default_img2img_input_is_a_plain_image():
    mode = build_mode(tab_img2img)
    assert type(mode.image_input) is gr.Image
    assert set(mode.image_input.sources) == {"upload", "clipboard"}
    image = Image.new("RGB", (8, 8))
    assert mode.read(image) == {"init_image": image}


def test_sketch_tab_always_has_the_colour_editor():
    mode = build_mode(tab_sketch)
    assert isinstance(mode.image_input, gr.ImageEditor)
    assert mode.image_input.brush.colors == SKETCH_COLORS


def test_editor_preprocess_gives_the_composite_as_init_image(tmp_path):
    """Gradio's own conversion of what the browser sends: files for background, layers and composite."""
    mode = build_mode(tab_sketch)
    paths = {}
    for name, color in (("background", (0, 0, 255, 255)), ("layer", (255, 0, 0, 255)),
                        ("composite", (255, 0, 0, 255))):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGBA", (32, 24), color).save(paths[name])
    payload = mode.image_input.data_model(
        background=FileData(path=str(paths["background"])), layers=[FileData(path=str(paths["layer"]))],
        composite=FileData(path=str(paths["composite"])))
    init = mode.init_image(mode.image_input.preprocess(payload))
    assert init.size == (32, 24) and init.getpixel((0, 0))[:3] == (255, 0, 0)


# 2. PNG Info ------------------------------------------------------------------------------------------------
def test_png_info_upload_keeps_the_parameters_chunk(png_with_infotext, tmp_path):
    with gr.Blocks():
        tab = tab_png_info.build([("img2img", "Send to img2img")])
    # What Gradio does with an upload: the file is copied to its cache and preprocessed from there.
    uploaded = tmp_path / "upload" / "00001-1234.png"
    uploaded.parent.mkdir()
    shutil.copy(png_with_infotext(INFOTEXT), uploaded)
    image = tab.image.preprocess(FileData(path=str(uploaded), orig_name=uploaded.name))
    assert isinstance(image, Image.Image)
    assert tab_png_info.image_infotext(image) == INFOTEXT


def test_png_info_says_when_there_is_nothing(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert tab_png_info.image_infotext(Image.open(plain)) == "No generation parameters found in this image."
    assert tab_png_info.image_infotext(None) == ""


# 3. Send to -------------------------------------------------------------------------------------------------
def test_send_to_fills_every_field_the_infotext_names():
    target = build_mode(tab_sketch)
    image = Image.new("RGB", (96, 64))
    out = send_outputs(image, INFOTEXT, target, list(FIELD_NAMES), "img2img", 2.0, {"img2img": (8, 8)})
    main_tabs, mode_tabs, mode_name, value, *rest = out
    fields = dict(zip(FIELD_NAMES, rest[:len(FIELD_NAMES)], strict=True))
    resize_tabs, resize_tab, sizes, note = rest[len(FIELD_NAMES):]
    assert main_tabs.selected == "img2img" and mode_tabs.selected == target.tab_id and mode_name == "sketch"
    assert value is image
    assert fields["prompt"] == "a fox in snow" and fields["negative_prompt"] == "blurry"
    assert (fields["steps"], fields["sampler_name"], fields["scheduler"]) == (12, "DPM++ 2M", "Karras")
    assert (fields["cfg_scale"], fields["seed"], fields["denoising_strength"]) == (6.5, 1234, 0.4)
    assert (fields["width"], fields["height"], fields["resize_mode"]) == (640, 384, "Crop and resize")
    assert fields["subseed_strength"] == 0.0 and fields["show_extra"] is False
    assert isinstance(fields["n_iter"], type(gr.skip())) and isinstance(fields["scale"], type(gr.skip()))
    assert resize_tabs.selected == RESIZE_TO and resize_tab == RESIZE_TO
    assert sizes == {"img2img": (8, 8), "sketch": (96, 64)}
    assert note == "Resize by: from 96x64 to 192x128"


def test_send_without_infotext_only_moves_the_image():
    target = build_mode(tab_img2img)
    out = send_outputs(Image.new("RGB", (8, 8)), None, target, list(FIELD_NAMES), "img2img", 1.0, {})
    skipped = type(gr.skip())
    assert all(isinstance(v, skipped) for v in out[4:4 + len(FIELD_NAMES) + 2])


# 4. Worker thread -> progress stream ------------------------------------------------------------------------
def test_run_in_thread_streams_progress_then_the_result():
    def job(on_progress, control):
        for step in range(1, 4):
            preview = Image.new("RGB", (1, 1)) if step == 2 else None
            on_progress(ProgressUpdate(0, 1, step, 3, 0.1 * step, preview=preview))
        return "result"

    events = list(run_in_thread(job, poll_seconds=0.01))
    assert isinstance(events[-1], Finished) and events[-1].result == "result"
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].update.step == 3
    assert progress[-1].preview is not None  # the last preview is kept while later reports have none


def test_run_in_thread_reraises_the_job_error():
    def job(on_progress, control):
        raise ValueError("bad thing")

    with pytest.raises(ValueError, match="bad thing"):
        list(run_in_thread(job, poll_seconds=0.01))


def test_closing_the_stream_interrupts_the_job():
    stopped = threading.Event()

    def job(on_progress, control):
        while not control.interrupted:
            on_progress(ProgressUpdate(0, 1, 1, 10, 0.1))
            threading.Event().wait(0.01)
        stopped.set()
        return None

    stream = run_in_thread(job, poll_seconds=0.01)
    assert isinstance(next(stream), Progress)
    stream.close()
    assert stopped.wait(5)
