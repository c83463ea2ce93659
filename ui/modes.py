"""What every img2img sub-tab (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload, ...) provides.

A sub-tab module's `build(settings)` creates its widgets inside a gr.Tab and returns a ModeTab. The shared
code only talks to ModeTab: it reads the tab's inputs into request fields, puts a sent image into it,
and switches to it. Adding a tab = one module + one line in ui/build.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
from PIL import Image

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

    def init_image(self, *values: Any) -> Image.Image | None:
        return self.read(*values).get("init_image")


def sketch_editor(label: str, elem_id: str) -> gr.ImageEditor:
    """The colour-sketch editor: the uploaded image is the background; strokes are painted on a layer with a
    colour brush (palette + free colour picker); the composite is the init image."""
    return gr.ImageEditor(
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
    )


def image_input(label: str, elem_id: str) -> gr.Image:
    """A plain image input accepting a click-to-upload, drag-and-drop or a clipboard paste."""
    return gr.Image(
        label=label,
        elem_id=elem_id,
        sources=["upload", "clipboard"],
        type="pil",
        image_mode="RGBA",  # transparency is kept; the engine flattens it onto white
        format="png",
        height=512,
    )
