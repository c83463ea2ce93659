"""The Sketch sub-tab: paint colours on the uploaded image; the painted composite is the init image."""

from __future__ import annotations

import gradio as gr

from pipelines.launch_flags import Settings
from ui.modes import ModeTab, sketch_editor
from ui.values import image_from_editor

NAME, LABEL, TAB_ID = "sketch", "Sketch", "img2img_sketch_tab"


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        widget = sketch_editor("Image for img2img", "img2img_sketch", settings)

    def read(value):
        return {"init_image": image_from_editor(value)}

    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=[widget], read=read, image_input=widget)
