"""The "Settings" accordion: A1111's img2img options that act on one run (clip skip, inpainting conditioning
mask strength, background colour, file format, ...), each control derived from its row in pipelines/options.py
(label, range, default). Their values are widget values like every other parameter: kept per browser session
by Gradio and turned into request fields by ui.values (FIELD_NAMES), so PNG Info and "Send to" paste them too
(e.g. "Clip skip: 2")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.options import Option
from ui.values import SETTINGS_OPTIONS


@dataclass
class SettingsPanel:
    fields: dict[str, Any]  # request field name (ui.values.SETTINGS_FIELD_LABELS) -> component


def control_for(option: Option) -> Any:
    """The Gradio control an option's row asks for."""
    elem_id = f"setting_{option.key}"
    if option.kind == "bool":
        return gr.Checkbox(option.default, label=option.label, elem_id=elem_id)
    if option.kind == "choice":
        return gr.Radio(list(option.choices), value=option.default, label=option.label, elem_id=elem_id)
    if option.kind == "color":
        return gr.ColorPicker(option.default, label=option.label, elem_id=elem_id)
    if option.kind in ("int", "float") and option.minimum is not None and option.maximum is not None:
        return gr.Slider(option.minimum, option.maximum, value=option.default, step=option.step,
                         label=option.label, elem_id=elem_id)
    if option.kind in ("int", "float"):
        return gr.Number(option.default, label=option.label, precision=0 if option.kind == "int" else None,
                         elem_id=elem_id)
    return gr.Textbox(option.default, label=option.label, elem_id=elem_id)


def build_settings_panel() -> SettingsPanel:
    fields: dict[str, Any] = {}
    with gr.Accordion("Settings", open=False, elem_id="img2img_settings_accordion"):
        for option in SETTINGS_OPTIONS:
            fields[option.field] = control_for(option)
    return SettingsPanel(fields)
