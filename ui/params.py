"""The parameter panel shared by all img2img sub-tabs, laid out and labelled as A1111's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.fields import MAX_BATCH_SIZE, MAX_SIDE, MIN_SIDE
from pipelines.generation.samplers import SAMPLER_NAMES, SCHEDULE_TYPES
from ui.values import RESIZE_BY, RESIZE_MODE_CHOICES, RESIZE_TO, scale_text


@dataclass
class ParamsPanel:
    fields: dict[str, Any]  # field name (ui.values.FIELD_NAMES, minus the prompts) -> component
    resize_tabs: gr.Tabs
    resize_tab: gr.State  # RESIZE_TO or RESIZE_BY: which of the two tabs is in use
    scale_note: gr.Markdown
    swap_size: gr.Button
    detect_size: gr.Button
    random_seed: gr.Button
    reuse_seed: gr.Button
    random_subseed: gr.Button
    reuse_subseed: gr.Button
    extra_row: gr.Row


# Hover hints for icon buttons, by elem_id (Gradio buttons have no tooltip argument; ui.build's page script
# sets them as title attributes, as A1111's hints.js does).
TOOLTIPS: dict[str, str] = {}


def tool_button(icon: str, elem_id: str, tooltip: str) -> gr.Button:
    """A small icon button; elem_id keeps A1111's names for user scripts and CSS."""
    TOOLTIPS[elem_id] = tooltip
    return gr.Button(icon, elem_id=elem_id, elem_classes=["tool"], size="sm", scale=0, min_width=40)


# A slider's number box takes any number, and Gradio silently puts one outside the range back into it when
# the box loses focus (steps 0 runs 1). Say so under the slider, naming the field. Runs once on page load; the
# capture-phase listener sees the typed value before Gradio's own blur handler clamps it.
CLAMP_NOTE_JS = """
document.addEventListener('blur', (e) => {
  const box = e.target;
  if (!(box instanceof HTMLInputElement) || box.type !== 'number' || box.value === '') return;
  const block = box.closest('.block');
  if (!block || !block.querySelector('input[type=range]')) return;
  const value = Number(box.value), min = Number(box.min), max = Number(box.max);
  let note = block.querySelector('.clamp-note');
  if (Number.isNaN(value) || (value >= min && value <= max)) { if (note) note.remove(); return; }
  const title = block.querySelector('[data-testid="block-info"]') || block.querySelector('label');
  const label = (title ? title.textContent : block.id).trim();
  const used = value < min ? min : max;
  if (!note) { note = document.createElement('div'); note.className = 'clamp-note'; block.appendChild(note); }
  note.textContent = `${label}: ${value} is ${value < min ? 'below the minimum' : 'above the maximum'}, ` +
                     `so ${used} is used`;
  clearTimeout(note.timer);
  note.timer = setTimeout(() => note.remove(), 10000);
}, true);
"""


def build_params_panel() -> ParamsPanel:
    f: dict[str, Any] = {}
    f["resize_mode"] = gr.Radio(list(RESIZE_MODE_CHOICES), value=RESIZE_MODE_CHOICES[0], label="Resize mode",
                                elem_id="resize_mode")
    with gr.Row():
        f["sampler_name"] = gr.Dropdown(list(SAMPLER_NAMES), value="DPM++ 2M", label="Sampling method",
                                        elem_id="img2img_sampling")
        f["scheduler"] = gr.Dropdown(list(SCHEDULE_TYPES), value="Automatic", label="Schedule type",
                                     elem_id="img2img_scheduler")
        f["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="img2img_steps",
                               min_width=220)
    with gr.Row():
        with gr.Column(scale=4):
            resize_tab = gr.State(RESIZE_TO)
            with gr.Tabs(elem_id="img2img_dimensions_tabs") as resize_tabs:
                with gr.Tab("Resize to", id=RESIZE_TO, elem_id="img2img_tab_resize_to") as tab_to:
                    with gr.Row():
                        with gr.Column(scale=4, min_width=200):
                            f["width"] = gr.Slider(MIN_SIDE, MAX_SIDE, value=512, step=8, label="Width",
                                                   elem_id="img2img_width")
                            f["height"] = gr.Slider(MIN_SIDE, MAX_SIDE, value=512, step=8, label="Height",
                                                    elem_id="img2img_height")
                        with gr.Column(scale=0, min_width=50):
                            swap_size = tool_button("⇅", "img2img_res_switch_btn", "Switch width/height")
                            detect_size = tool_button("📐", "img2img_detect_image_size_btn",
                                                      "Auto detect size from the image")
                with gr.Tab("Resize by", id=RESIZE_BY, elem_id="img2img_tab_resize_by") as tab_by:
                    f["scale"] = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale",
                                           elem_id="img2img_scale")
                    scale_note = gr.Markdown(scale_text(None, 1.0),
                                             elem_id="img2img_scale_resolution_preview")
            tab_to.select(lambda: RESIZE_TO, outputs=resize_tab, queue=False)
            tab_by.select(lambda: RESIZE_BY, outputs=resize_tab, queue=False)
        with gr.Column(scale=1, min_width=200):
            f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                    elem_id="img2img_batch_count")
            f["batch_size"] = gr.Slider(1, MAX_BATCH_SIZE, value=1, step=1, label="Batch size",
                                        elem_id="img2img_batch_size")
    f["cfg_scale"] = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id="img2img_cfg_scale")
    f["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                        elem_id="img2img_denoising_strength")
    with gr.Row(equal_height=True):
        f["seed"] = gr.Number(value=-1, precision=0, label="Seed", elem_id="img2img_seed", scale=4)
        random_seed = tool_button("🎲", "img2img_random_seed", "Set seed to -1: a new random seed every time")
        reuse_seed = tool_button("♻️", "img2img_reuse_seed", "Reuse the seed of the selected output image")
        # no box of its own (an empty-looking box as tall as the seed field otherwise), as A1111's
        f["show_extra"] = gr.Checkbox(False, label="Extra", elem_id="img2img_subseed_show", scale=0,
                                      min_width=90, container=False)
    with gr.Row(visible=False, equal_height=True) as extra_row:
        f["subseed"] = gr.Number(value=-1, precision=0, label="Variation seed", elem_id="img2img_subseed",
                                 scale=4)
        random_subseed = tool_button("🎲", "img2img_random_subseed", "Set variation seed to -1")
        reuse_subseed = tool_button("♻️", "img2img_reuse_subseed",
                                    "Reuse the variation seed of the selected output image")
        f["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength",
                                          elem_id="img2img_subseed_strength", scale=4)

    # Wiring that needs nothing outside the panel.
    f["show_extra"].change(lambda show: gr.Row(visible=bool(show)), inputs=f["show_extra"], outputs=extra_row,
                           queue=False)
    random_seed.click(lambda: -1, outputs=f["seed"], queue=False)
    random_subseed.click(lambda: -1, outputs=f["subseed"], queue=False)
    swap_size.click(lambda w, h: (h, w), inputs=[f["width"], f["height"]], outputs=[f["width"], f["height"]],
                    queue=False)
    return ParamsPanel(f, resize_tabs, resize_tab, scale_note, swap_size, detect_size, random_seed,
                       reuse_seed, random_subseed, reuse_subseed, extra_row)
