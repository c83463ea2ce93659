"""What every img2img sub-tab (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload, ...) provides.

A sub-tab module's `build(settings)` creates its widgets inside a gr.Tab and returns a ModeTab. The shared
code only talks to ModeTab: it reads the tab's inputs into request fields, puts a sent image into it,
and switches to it. Adding a tab = one module + one line in ui/build.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from PIL import Image

from pipelines.limits import Limits
from ui.values import UnreadableImage, unreadable_message

# Colours of the sketch brush palette (A1111's sketch lets users pick any colour; these are shortcuts).
SKETCH_COLORS = [
    "#000000", "#ffffff", "#808080", "#ff0000", "#ff8000", "#ffff00",
    "#00c000", "#00ffff", "#0000ff", "#8000ff", "#ff00ff", "#804000",
]


@dataclass
class ModeTab:
    name: str  # "img2img", "sketch", ... (what gr.State "mode" holds)
    label: str  # the tab's label, as in A1111
    tab_id: str  # the gr.Tab id, for switching to it
    tab: gr.Tab
    inputs: list[Any]  # components read at Generate, in this order
    # inputs' values -> Img2ImgRequest fields (at least "init_image"); may raise RequestError
    read: Callable[..., dict[str, Any]]
    image_input: Any  # the component that "Send to" fills
    # a PIL image -> the value for image_input (plain image or editor dict)
    to_value: Callable[[Image.Image], Any] = lambda image: image
    masks: bool = False  # an inpaint sub-tab: read gives a "mask" and the inpaint controls are shown
    # A tab that runs its own job instead of one img2img (Batch): (engine, its values, the panel's values, resize
    # tab, script values, scripts panel) -> (the panel's request, job(on_progress, control)). See ui/tab_batch.py.
    run_job: Callable[..., Any] | None = None

    def init_image(self, *values: Any) -> Image.Image | None:
        return self.read(*values).get("init_image")


def sketch_editor(label: str, elem_id: str, settings: Any = None) -> gr.ImageEditor:
    """The colour-sketch editor: the uploaded image is the background; strokes are painted on a layer with a
    colour brush (palette + free colour picker); the composite is the init image."""
    return tolerant(gr.ImageEditor(
        label=label,
        elem_id=elem_id,
        sources=["upload", "clipboard"],
        type="pil",
        image_mode="RGBA",  # keep stroke alpha so an untouched, empty canvas can be told apart
        brush=gr.Brush(colors=SKETCH_COLORS, default_color="#ff0000", color_mode="defaults"),
        eraser=gr.Eraser(),
        layers=False,
        transforms=("crop",),
        format="png",
        height=512,
    ), settings)


def image_input(label: str, elem_id: str, settings: Any = None) -> gr.Image:
    """A plain image input accepting a click-to-upload, drag-and-drop or a clipboard paste."""
    return tolerant(gr.Image(
        label=label,
        elem_id=elem_id,
        sources=["upload", "clipboard"],
        type="pil",
        image_mode="RGBA",  # transparency is kept; the engine flattens it onto white
        format="png",
        height=512,
    ), settings)


# Image inputs that never fail before a handler runs ----------------------------------------------------------
# Gradio decodes every input of an event before calling it; one undecodable file would fail the whole event
# with "Could not preprocess input component at index N". Generate sends every sub-tab's image, so a bad file
# on another tab would break it everywhere. These inputs hand over UnreadableImage(reason) instead: only the
# active tab's inputs are then looked at (ui.generation.request_for), and an upload is checked as it arrives.
def _tolerant(preprocess: Callable[[Any], Any], payload: Any, limits: Limits | None = None) -> Any:
    try:
        if limits is not None:  # the declared size, read from the header before anything is decoded
            for path in _uploaded_paths(payload):
                with Image.open(path) as header:
                    limits.check_image_size("image", header.size)
        value = preprocess(payload)
        if isinstance(value, Image.Image):
            value.load()  # a truncated file fails here, not later deep inside a run
        return value
    except Exception as exc:  # noqa: BLE001 - whatever the decoder says is the reason shown to the user
        reason = str(exc) or type(exc).__name__
        for path in {getattr(payload, "path", None), getattr(getattr(payload, "background", None), "path", None)}:
            if path:  # Gradio's cache path means nothing to the user: the file's own name instead
                reason = reason.replace(str(path), Path(path).name)
        return UnreadableImage(reason)


def _uploaded_paths(payload: Any) -> list[str]:
    """The files an Image (FileData) or ImageEditor (background and layers) payload points at."""
    files = [payload, getattr(payload, "background", None), *(getattr(payload, "layers", None) or [])]
    return [path for path in (getattr(f, "path", None) for f in files) if path]


def tolerant(component: Any, settings: Any = None) -> Any:
    """The component, its preprocess made to hand over UnreadableImage instead of failing, and to refuse a file
    whose declared size is over --max-image-pixels before decoding it (a small PNG can declare 13000x13000).
    (On the instance, not a subclass: Gradio writes a .pyi stub next to the module of every Component subclass.)"""
    preprocess = component.preprocess
    limits = Limits.from_settings(settings) if settings is not None else None
    component.preprocess = lambda payload: _tolerant(preprocess, payload, limits)
    return component


def unreadable_input(mode: ModeTab, values: tuple) -> str | None:
    """The message for the first of the tab's inputs that holds an undecodable file, else None."""
    for widget, value in zip(mode.inputs, values):
        if isinstance(value, UnreadableImage):
            what = f"the file in \"{widget.label}\"" if getattr(widget, "label", None) else "the uploaded file"
            return unreadable_message(mode.label, what, value.reason)
    return None


def check_upload(value: Any, tab_label: str, input_label: str) -> Any:
    """The .upload check of a plain image input: a file that is not a readable image is refused at once with
    a message naming the tab, and the input is cleared; a good one is left as it is."""
    if not isinstance(value, UnreadableImage):
        return gr.skip()
    gr.Warning(unreadable_message(tab_label, f"the file in \"{input_label}\"", value.reason), duration=15)
    return None


def wire_upload_checks(mode: ModeTab) -> None:
    """Every plain image input of the tab checks its upload. (An ImageEditor is not listened to: any listener
    reading one makes the browser send all its layers again at every later update; Generate checks it.)"""
    for widget in mode.inputs:
        if isinstance(widget, gr.Image):
            # queued (the warning reaches the page only through the queue), but never behind a running job
            widget.upload(lambda value, label=widget.label: check_upload(value, mode.label, label),
                          inputs=widget, outputs=widget, concurrency_limit=None, show_progress="hidden")
