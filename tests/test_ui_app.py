"""app.py's wiring and the built UI, in-process (no browser): flags -> auth, environment, launch options,
the components users know from A1111, and the generate handler on the demo model."""

import os
import threading
import time

import gradio as gr
import pytest
from PIL import Image

import app
from pipelines.launch_flags import parse_flags
from ui.output_panel import Results
from ui.top_bar import DEMO_LABEL
from ui.values import FIELD_NAMES


# 1. Flags -> launch options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (None, None),
    ("", None),
    ("user:pass", [("user", "pass")]),
    ("u:p, u2:p2", [("u", "p"), ("u2", "p2")]),
    ("admin:pa:ss:word,", [("admin", "pa:ss:word")]),  # split at the first ':' only; blank entries ignored
    ("u:", [("u", "")]),
])
def test_parse_auth(text, expected):
    assert app.parse_auth(text) == expected


@pytest.mark.parametrize("text", ["nopassword", ":pass", "u:p,oops"])
def test_parse_auth_rejects_entries_without_user_and_colon(text):
    with pytest.raises(ValueError, match="is not user:password"):
        app.parse_auth(text)


def test_environment_is_offline_and_quiet(monkeypatch):
    for name in app.OFFLINE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    app.configure_environment()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_launch_kwargs_follow_the_flags(tmp_path):
    settings = parse_flags(["--listen", "--port", "7999", "--data-dir", str(tmp_path),
                            "--gradio-auth", "a:b,c:d"])
    kwargs = app.launch_kwargs(settings)
    assert (kwargs["server_name"], kwargs["server_port"]) == ("0.0.0.0", 7999)
    assert kwargs["auth"] == [("a", "b"), ("c", "d")]
    assert kwargs["share"] is False
    assert kwargs["allowed_paths"] == [str(tmp_path / "outputs")]
    defaults = app.launch_kwargs(parse_flags(["--data-dir", str(tmp_path)]))
    assert (defaults["server_name"], defaults["server_port"], defaults["auth"]) == ("127.0.0.1", 7860, None)


# 2. The built app -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return app.create_app(parse_flags(["--data-dir", str(data_dir)]))


def components(blocks, kind=None):
    found = [b for b in blocks.blocks.values() if kind is None or isinstance(b, kind)]
    return {getattr(b, "label", None): b for b in found}


def test_labels_and_defaults_match_a1111(parts):
    by_label = components(parts.blocks)
    for label in ("Stable Diffusion checkpoint", "SD VAE", "Prompt", "Negative prompt", "Resize mode",
                  "Sampling method", "Schedule type", "Sampling steps", "Width", "Height", "Scale",
                  "Batch count",
                  "Batch size", "CFG Scale", "Denoising strength", "Seed", "Extra", "Variation seed",
                  "Variation strength", "Output", "Image for img2img", "Source"):
        assert label in by_label, label
    assert by_label["Sampling method"].value == "DPM++ 2M"  # A1111 UI default
    assert by_label["Schedule type"].value == "Automatic"
    assert (by_label["Sampling steps"].minimum, by_label["Sampling steps"].maximum) == (1, 150)
    assert by_label["Sampling steps"].value == 20
    width = next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == "img2img_width")
    assert (width.minimum, width.maximum, width.step) == (64, 2048, 8)  # (Extras has its own "Width", up to 8192)
    assert (by_label["CFG Scale"].step, by_label["CFG Scale"].value) == (0.5, 7.0)
    assert by_label["Denoising strength"].value == 0.75
    assert (by_label["Batch size"].maximum, by_label["Batch count"].maximum) == (8, 100)
    assert by_label["Seed"].value == -1
    assert by_label["Resize mode"].choices == [(c, c) for c in (
        "Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")]
    tabs = [b.label for b in parts.blocks.blocks.values() if isinstance(b, gr.Tab)]
    for tab in ("img2img", "Sketch", "PNG Info", "Resize to", "Resize by"):
        assert tab in tabs
    buttons = {b.value for b in parts.blocks.blocks.values() if isinstance(b, gr.Button)}
    assert {"Generate", "Interrupt", "Skip", "Send to img2img", "Send to sketch", "🎲", "♻️", "🔄"} <= buttons


def test_demo_model_status_says_where_checkpoints_go(parts):
    status = next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == "model_status")
    assert "demo model" in status.value and "models/Stable-diffusion/" in status.value
    assert components(parts.blocks)["Stable Diffusion checkpoint"].value == "demo-untrained"


def test_img2img_input_is_a_plain_image_by_default(parts):
    image = next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == "img2img_image")
    assert type(image) is gr.Image
    assert set(image.sources) == {"upload", "clipboard"}
    sketch = next(b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None) == "img2img_sketch")
    assert isinstance(sketch, gr.ImageEditor)


def handler(parts, name):
    return next(f.fn for f in parts.blocks.fns.values() if f.name == name)


def generate_values(parts, image, **fields):
    """The generate handler's arguments: every input's default (mode state "img2img", the other sub-tabs'
    empty widgets, ...), the img2img image, and these field values in FIELD_NAMES order."""
    values = {"prompt": "a red fox", "negative_prompt": "", "resize_mode": "Just resize",
              "sampler_name": "Euler a", "scheduler": "Automatic", "steps": 4, "width": 64, "height": 64,
              "scale": 1.0, "n_iter": 1, "batch_size": 1, "cfg_scale": 7.0, "denoising_strength": 0.75,
              "seed": 42, "show_extra": False, "subseed": -1, "subseed_strength": 0.0} | fields
    inputs = next(f for f in parts.blocks.fns.values() if f.name == "generate").inputs
    args = [getattr(component, "value", None) for component in inputs]
    ids = [getattr(component, "elem_id", None) for component in inputs]
    args[ids.index("img2img_image")] = image
    start = ids.index("img2img_prompt")  # the fields follow in FIELD_NAMES order
    for offset, name in enumerate(FIELD_NAMES):
        if name in values:
            args[start + offset] = values[name]
    return args


def test_generate_handler_streams_progress_then_the_gallery(parts):
    source = Image.new("RGB", (80, 64), "orange")
    updates = list(handler(parts, "generate")(*generate_values(parts, source, steps=10)))
    progress_texts = [u[4] for u in updates[1:-1]]
    assert progress_texts and all("\n\nstep " in t and "batch 1/1, ETA" in t for t in progress_texts)
    # a real bar (issue 10): the whole run's fraction, then the text and ETA
    assert all(t.startswith('<progress class="img2img-progress-bar" value="') for t in progress_texts)
    assert updates[0][6] == {"img2img": (80, 64)}  # the image size, for the "Resize by" note
    gallery, results, selected, infotext, text, preview, _, _ = updates[-1]
    assert isinstance(results, Results) and len(results.images) == 1 and results.seeds == [42]
    assert gallery.value and selected == 0
    assert infotext.startswith("a red fox\nSteps: 10, Sampler: Euler a")
    assert "Seed: 42, Size: 64x64" in infotext
    assert text.startswith("Done: 1 image.")
    assert results.paths[0].name.endswith("-42.png") and results.paths[0].exists()


def test_generate_errors_are_readable(parts):
    with pytest.raises(gr.Error, match="no image in the img2img tab"):
        list(handler(parts, "generate")(*generate_values(parts, None)))
    with pytest.raises(gr.Error, match=r"Sampling steps \(steps\): 151 is outside 1..150"):
        list(handler(parts, "generate")(*generate_values(parts, Image.new("RGB", (64, 64)), steps=151)))


def test_interrupt_stops_a_run_and_keeps_the_server_usable(parts):
    run = handler(parts, "generate")(*generate_values(parts, Image.new("RGB", (64, 64)), steps=150, n_iter=3))
    next(run)  # "Starting…"
    next(run)  # the first progress report: the job is running
    threading.Thread(target=handler(parts, "interrupt")).start()
    last = list(run)[-1]
    assert last[4].startswith("Interrupted: 1 image kept")  # the unfinished batch, as A1111 returns it
    assert not parts.engine.busy
    done = list(handler(parts, "generate")(*generate_values(parts, Image.new("RGB", (64, 64)))))[-1]
    assert done[4].startswith("Done: 1 image")


def test_closing_the_stream_interrupts_the_job(parts):
    run = handler(parts, "generate")(*generate_values(parts, Image.new("RGB", (64, 64)), steps=150, n_iter=5))
    next(run)
    next(run)
    run.close()  # what Gradio does when the browser goes away
    deadline = time.monotonic() + 20
    while parts.engine.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not parts.engine.busy


def test_checkpoint_dropdown_handlers(parts):
    with pytest.raises(gr.Error, match=r"checkpoint 'nope' not found; known: demo-untrained"):
        handler(parts, "load_checkpoint")("nope")
    with pytest.raises(gr.Error, match=r"SD VAE: VAE 'nope.safetensors' not found"):
        handler(parts, "set_vae")("nope.safetensors")
    checkpoint, vae, status = handler(parts, "refresh")()  # what the widgets show = what is loaded
    assert checkpoint.value == "demo-untrained"
    assert checkpoint.choices == [(DEMO_LABEL, "demo-untrained")]
    assert "untrained demo" in DEMO_LABEL
    assert vae.value == "Automatic" and "demo model" in status


# 3. Hardening (issue 10) ------------------------------------------------------------------------------------
def test_refresh_on_the_demo_model_keeps_it_chosen_and_listed(parts):
    from ldm_export import write_checkpoint

    from pipelines.models.demo_model import build_demo_components

    folder = parts.settings.models_dir / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    new = folder / "fresh.safetensors"
    write_checkpoint(build_demo_components(), new)
    try:
        checkpoint, _, status = handler(parts, "refresh")()
        assert checkpoint.value == "demo-untrained"  # the box shows the loaded model
        values = [value for _, value in checkpoint.choices]
        assert values[-1] == "demo-untrained" and values[0].startswith("fresh [")
        assert "demo model" in status
    finally:
        new.unlink()
        parts.models.refresh()


def test_every_page_load_reads_the_current_lists(parts):
    """New browser tabs see the current checkpoint list: a load event runs sync()."""
    loads = [d for d in parts.blocks.fns.values()
             if any(t[1] == "load" for t in d.targets) and d.name == "sync"]
    assert loads, "no page-load event fills the checkpoint box"
    outputs = [getattr(o, "elem_id", None) for o in loads[0].outputs]
    assert outputs == ["setting_sd_model_checkpoint", "setting_sd_vae", "model_status"]


def test_checkpoint_box_is_empty_only_when_no_model_is_loaded():
    from ui.top_bar import loaded_title, status_markdown

    class NoModel:
        skipped = []

        @property
        def current(self):
            from pipelines.models.model_manager import NoModelLoaded
            raise NoModelLoaded("loading x failed: bad file")

        def status_line(self):
            return self.current

    assert loaded_title(NoModel()) is None
    assert status_markdown(NoModel()) == "⚠️ **No model is loaded: loading x failed: bad file**"


def test_an_upload_declaring_too_many_pixels_is_refused_before_decoding(parts, tmp_path):
    """A small PNG can declare 13000x13000 (gigabytes decoded): its header is checked against
    --max-image-pixels before Gradio decodes it, on every image input of every tab."""
    from gradio.data_classes import FileData

    from ui.values import UnreadableImage

    bomb = tmp_path / "bomb.png"
    Image.new("1", (5000, 5000)).save(bomb)  # 25 MP declared; a few KB on disk
    assert bomb.stat().st_size < 100_000
    by_id = {getattr(b, "elem_id", None): b for b in parts.blocks.blocks.values()}
    for elem_id in ("img2img_image", "img_inpaint_base", "img_inpaint_mask"):
        value = by_id[elem_id].preprocess(FileData(path=str(bomb), orig_name=bomb.name))
        assert isinstance(value, UnreadableImage) and "--max-image-pixels" in value.reason, elem_id


def test_an_unreadable_upload_is_named_and_only_the_active_tab_matters(parts, tmp_path):
    from gradio.data_classes import FileData

    from ui.values import UnreadableImage

    by_id = {getattr(b, "elem_id", None): b for b in parts.blocks.blocks.values()}
    garbage = tmp_path / "notes.png"
    garbage.write_bytes(b"this is not a picture")
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:80])
    for path in (garbage, truncated):  # Gradio's preprocess no longer fails the whole event
        value = by_id["img_inpaint_mask"].preprocess(FileData(path=str(path), orig_name=path.name))
        assert isinstance(value, UnreadableImage), path

    # at upload: the tab and "not a readable image", and the input is cleared
    check = next(d.fn for d in parts.blocks.fns.values()
                 if any(t[1] == "upload" for t in d.targets) and d.inputs == [by_id["img_inpaint_mask"]])
    warnings = []
    import ui.modes

    original, ui.modes.gr.Warning = ui.modes.gr.Warning, lambda message, **kw: warnings.append(message)
    try:
        assert check(UnreadableImage("cannot identify image file")) is None
        assert check(Image.new("RGB", (8, 8))) == gr.skip()
    finally:
        ui.modes.gr.Warning = original
    assert warnings == ['the file in "Mask" in the Inpaint upload tab is not a readable image (cannot identify '
                        'image file); upload a PNG, JPEG or WebP picture']

    # at Generate: a bad file on another tab does not matter; on the active tab it is named
    args = generate_values(parts, Image.new("RGB", (64, 64)))
    inputs = next(f for f in parts.blocks.fns.values() if f.name == "generate").inputs
    args[inputs.index(by_id["img_inpaint_mask"])] = UnreadableImage("cannot identify image file")
    assert list(handler(parts, "generate")(*args))[-1][4].startswith("Done: 1 image")
    args[inputs.index(by_id["img2img_image"])] = UnreadableImage("image file is truncated")
    with pytest.raises(gr.Error, match=r"The file in \"Image for img2img\" in the img2img tab is not a readable "
                                       r"image \(image file is truncated\)"):
        list(handler(parts, "generate")(*args))


def test_a_failed_run_clears_its_error_badges(parts):
    """The red "Error" badges stay on the outputs of a failed event until another event updates them: a
    .failure() follow-up does, for Generate (gallery, progress, preview) and Interrogate (prompt)."""
    generate = next(d for d in parts.blocks.fns.values() if d.name == "generate")
    follow = [d for d in parts.blocks.fns.values() if d.trigger_after == generate._id and d.trigger_only_on_failure]
    assert follow and [o.elem_id for o in follow[0].outputs] == [
        "img2img_gallery", "html_info_img2img", "img2img_progress", "img2img_preview",
        "img2img_scale_resolution_preview"]
    assert follow[0].fn()[2] == ""
    interrogate = next(d for d in parts.blocks.fns.values() if d.name == "interrogate")
    follow = [d for d in parts.blocks.fns.values()
              if d.trigger_after == interrogate._id and d.trigger_only_on_failure]
    assert follow and [o.elem_id for o in follow[0].outputs] == ["img2img_prompt"]


def test_the_loopback_tab_has_one_color_correction_checkbox(parts):
    labels = [b.label for b in parts.blocks.blocks.values()
              if isinstance(b, gr.Checkbox) and "Color correction" in (b.label or "")]
    assert labels == ["Color correction"]
