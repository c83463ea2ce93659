"""The PNG Info tab: drop an image, read its generation parameters, send image + parameters to a tab."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from pipelines.io.outputs import read_infotext

TAB_ID = "pnginfo"


@dataclass
class PngInfoTab:
    tab: gr.Tab
    image: gr.Image
    infotext: gr.Textbox
    send_buttons: dict[str, gr.Button] = field(default_factory=dict)  # mode name -> button
    other_buttons: dict[str, gr.Button] = field(default_factory=dict)  # another tab's id -> its "Send to"


def image_infotext(image: Image.Image | None) -> str:
    """The parameters text of an uploaded image, or a note saying it has none."""
    if image is None:
        return ""
    return read_infotext(image) or "No generation parameters found in this image."


def build(send_targets: list[tuple[str, str]], other_targets: list[tuple[str, str]] = ()) -> PngInfoTab:
    with gr.Tab("PNG Info", id=TAB_ID, elem_id="tab_pnginfo") as tab:
        with gr.Row(equal_height=False):
            with gr.Column():
                # type="pil" with image_mode=None hands over the uploaded file as PIL opened it, unconverted,
                # so the PNG text chunks / EXIF stay in image.info (a mode conversion would drop them).
                image = gr.Image(label="Source", elem_id="pnginfo_image", sources=["upload", "clipboard"],
                                 type="pil", image_mode=None, height=512)
            with gr.Column():
                infotext = gr.Textbox(label="Parameters", elem_id="pnginfo_generation_info",
                                      interactive=False, lines=8, max_lines=30, buttons=["copy"])
                with gr.Row():
                    buttons = {name: gr.Button(label, elem_id=f"pnginfo_send_to_{name}")
                               for name, label in send_targets}
                    others = {name: gr.Button(label, elem_id=f"pnginfo_send_to_{name}")
                              for name, label in other_targets}  # e.g. Extras, wired by its tab
    image.change(image_infotext, inputs=image, outputs=infotext, queue=False)
    return PngInfoTab(tab, image, infotext, buttons, others)
