""""Send to img2img / sketch": put an image into a sub-tab, fill the fields its infotext names, switch
to that tab."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from pipelines.io.infotext import parse_infotext
from ui.values import FieldUpdates, fields_from_infotext, scale_text


def field_updates(infotext: str | None) -> FieldUpdates:
    """Field values from an infotext; an image without one changes no field."""
    if not infotext or not infotext.strip():
        return FieldUpdates()
    return fields_from_infotext(parse_infotext(infotext))


def send_outputs(image: Image.Image, infotext: str | None, target: Any, field_names: list[str],
                 main_tab_id: str, scale: float | None, sizes: dict) -> list[Any]:
    """The values for [main tabs, mode tabs, mode state, target input, *fields, resize tabs, resize tab
    state, image sizes state, scale note], in that order (see ui.build.wire_send_buttons). `target` is the
    ModeTab."""
    updates = field_updates(infotext)
    for message in updates.warnings:
        gr.Warning(f"Not pasted: {message}")
    fields = [updates.values[name] if name in updates.values else gr.skip() for name in field_names]
    resize = ([gr.Tabs(selected=updates.resize_tab), updates.resize_tab] if updates.resize_tab
              else [gr.skip(), gr.skip()])
    return [gr.Tabs(selected=main_tab_id), gr.Tabs(selected=target.tab_id), target.name,
            target.to_value(image), *fields, *resize, {**sizes, target.name: image.size},
            scale_text(image.size, scale)]
