"""The img2img sub-tab: one init image. With --gradio-img2img-tool color-sketch its input is a colour-sketch
editor instead of a plain image."""

from __future__ import annotations

import gradio as gr

from pipelines.launch_flags import Settings
from ui.modes import ModeTab, image_input, sketch_editor
from ui.values import image_from_editor

NAME, LABEL, TAB_ID = "img2img", "img2img", "img2img_img2img_tab"


def uses_color_sketch(settings: Settings) -> bool:
    return settings.gradio_img2img_tool == "color-sketch"


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        if uses_color_sketch(settings):
            widget = sketch_editor("Image for img2img", "img2img_image", settings)

            def read(value):
                return {"init_image": image_from_editor(value)}
        else:
            widget = image_input("Image for img2img", "img2img_image", settings)

            def read(value):
                return {"init_image": value}
    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=[widget], read=read, image_input=widget)
