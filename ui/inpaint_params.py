"""The inpaint controls shared by the Inpaint, Inpaint sketch and Inpaint upload sub-tabs (hidden on the
others), and the Color correction checkbox (every sub-tab). Labels, ranges and defaults are A1111's; "Mask
grow/shrink" is beyond A1111. Their values reach the request through ui.values (FIELD_NAMES), like every
other parameter, so PNG Info and "Send to" paste them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.modes import ModeTab
from ui.output_panel import OutputPanel, Results
from ui.tab_png_info import PngInfoTab
from ui.values import INPAINT_AREA_CHOICES, INPAINT_FIELD_LABELS, MASK_MODE_CHOICES, MASKED_CONTENT_CHOICES


@dataclass
class InpaintPanel:
    group: gr.Column  # the inpaint controls, visible on the inpaint sub-tabs only
    fields: dict[str, Any]  # field name (ui.values.INPAINT_FIELD_LABELS) -> component


def build_inpaint_panel() -> InpaintPanel:
    labels = INPAINT_FIELD_LABELS
    f: dict[str, Any] = {}
    with gr.Column(visible=False, elem_id="img2img_inpaint_controls") as group:
        with gr.Row():
            f["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label=labels["mask_blur"],
                                       elem_id="img2img_mask_blur")
            f["mask_grow"] = gr.Slider(-64, 64, value=0, step=1, label=labels["mask_grow"],
                                       elem_id="img2img_mask_grow",
                                       info="pixels: > 0 grows the mask, < 0 shrinks it (before the blur)")
        f["mask_mode"] = gr.Radio(list(MASK_MODE_CHOICES), value=MASK_MODE_CHOICES[0], label=labels["mask_mode"],
                                  elem_id="img2img_mask_mode")
        f["masked_content"] = gr.Radio(list(MASKED_CONTENT_CHOICES), value="original",
                                       label=labels["masked_content"], elem_id="img2img_inpainting_fill")
        with gr.Row():
            f["inpaint_area"] = gr.Radio(list(INPAINT_AREA_CHOICES), value=INPAINT_AREA_CHOICES[0],
                                         label=labels["inpaint_area"], elem_id="img2img_inpaint_full_res")
            f["only_masked_padding"] = gr.Slider(0, 256, value=32, step=4, label=labels["only_masked_padding"],
                                                 elem_id="img2img_inpaint_full_res_padding")
        f["soft_inpainting"] = gr.Checkbox(False, label=labels["soft_inpainting"], elem_id="soft_inpainting_enabled",
                                           info="soft mask edges: the blurred mask sets how much each pixel may "
                                                "change")
    f["color_correction"] = gr.Checkbox(False, label=labels["color_correction"],
                                        elem_id="img2img_color_correction",
                                        info="match the output's colours to the original image")
    return InpaintPanel(group, f)


def wire_inpaint_panel(panel: InpaintPanel, modes: list[ModeTab], output: OutputPanel, png_info: PngInfoTab) -> None:
    """Show the controls while an inpaint sub-tab is active: when the user picks a sub-tab, and when a "Send
    to" button switches to one (it does when it has an image to send). Own listeners, so they cannot race
    the handlers that switch: gr.State.change would not fire after those (unqueued) events."""
    for mode in modes:
        def on_select(masks=mode.masks):
            return gr.Column(visible=masks)

        def after_gallery_send(results: Results, masks=mode.masks):
            return gr.Column(visible=masks) if results.images else gr.skip()

        def after_png_info_send(image: Any, masks=mode.masks):
            return gr.Column(visible=masks) if image is not None else gr.skip()

        mode.tab.select(on_select, outputs=panel.group, queue=False)
        if mode.name not in output.send_buttons:  # Batch: no "Send to" button
            continue
        output.send_buttons[mode.name].click(after_gallery_send, inputs=output.results, outputs=panel.group,
                                             queue=False)
        png_info.send_buttons[mode.name].click(after_png_info_send, inputs=png_info.image, outputs=panel.group,
                                               queue=False)
