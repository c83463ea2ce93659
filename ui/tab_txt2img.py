"""The txt2img tab (A1111's first tab): prompt row, styles, extra networks, sampler / size / batch / CFG /
seeds, the Hires. fix options, Generate / Interrupt / Skip with live progress and preview, and the gallery
with its infotext and "Send to img2img / inpaint / extras" (wired by ui/build.py and the Extras tab).

Built from the shared pieces (toprow, styles, extra networks, output panel, token counters) with the
`txt2img` elem_id prefix; widget values become a Txt2ImgRequest (ui/txt2img_values.py) for engine.txt2img.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.fields import MAX_BATCH_SIZE, MAX_SIDE, MIN_SIDE, RequestError
from pipelines.generation.hires import hires_target
from pipelines.generation.samplers import SAMPLER_NAMES, SCHEDULE_TYPES
from ui.extra_networks_panel import ExtraNetworksPanel, build_extra_networks_panel, wire_extra_networks
from ui.generation import Finished, Progress, enlarge_preview, run_in_thread, user_error
from ui.output_panel import OutputPanel, Results, build_output_panel
from ui.params import tool_button
from ui.styles_panel import StylesRow, build_styles_row, wire_styles
from ui.token_counter import counter_tokenizer, wire_token_counters
from ui.top_bar import GPU_QUEUE
from ui.toprow import Toprow, build_toprow
from ui.txt2img_values import (
    TXT2IMG_FIELDS,
    USE_SAME_SAMPLER,
    USE_SAME_SCHEDULER,
    describe,
    txt2img_fields_from_infotext,
    txt2img_request_from_fields,
    upscaler_choices,
)
from ui.user_errors import refuse
from ui.values import finished_text, progress_html

TAB_ID = "txt2img"
SEND_LABEL = "Send to txt2img"  # PNG Info's button
# The gallery's buttons to img2img sub-tabs (ui/build.py wires them; names are img2img's mode names).
SEND_TARGETS = [("img2img", "Send to img2img"), ("inpaint", "Send to inpaint")]
CSS = """
#txt2img_generate { min-height: 5.5em; }
#txt2img_progress { min-height: 4.5em; }
#txt2img_progress progress { width: 100%; height: 1.1em; accent-color: var(--color-accent); }
#txt2img_output_stack { position: relative; }
#txt2img_preview { position: absolute !important; top: 0; left: 0; right: 0; z-index: 5; }
#txt2img_subseed_show, #txt2img_hr { align-self: center; }
"""


@dataclass
class Txt2ImgTab:
    tab: gr.Tab
    toprow: Toprow
    styles: StylesRow
    networks: ExtraNetworksPanel
    fields: dict[str, Any]  # TXT2IMG_FIELDS -> component
    output: OutputPanel
    hires_options: gr.Column
    hires_note: gr.Markdown
    extra_row: gr.Row
    buttons: dict[str, gr.Button]  # swap_size, random_seed, reuse_seed, random_subseed, reuse_subseed

    @property
    def inputs(self) -> list[Any]:
        return [self.fields[name] for name in TXT2IMG_FIELDS]


def build(models: Any, styles_db: Any, upscaler_names: list[str],
          other_targets: list[tuple[str, str]] = ()) -> Txt2ImgTab:
    """`upscaler_names`: SD upscale's upscalers (None, Lanczos, Nearest, model files); `other_targets`: the
    buttons to other top-level tabs under the gallery (Extras)."""
    with gr.Tab("txt2img", id=TAB_ID, elem_id="tab_txt2img") as tab:
        toprow = build_toprow("txt2img")
        f: dict[str, Any] = {"prompt": toprow.prompt, "negative_prompt": toprow.negative_prompt}
        styles = build_styles_row(styles_db, prefix="txt2img")
        f["styles"] = styles.dropdown
        networks = build_extra_networks_panel(models, prefix="txt2img")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, elem_id="txt2img_settings"):
                buttons, extra_row = _build_params(f)
                hires_options, hires_note = _build_hires(f, upscaler_names)
            with gr.Column(scale=1, elem_id="txt2img_results"):
                output = build_output_panel(SEND_TARGETS, list(other_targets), prefix="txt2img")
    return Txt2ImgTab(tab, toprow, styles, networks, f, output, hires_options, hires_note, extra_row, buttons)


def _build_params(f: dict[str, Any]) -> tuple[dict[str, gr.Button], gr.Row]:
    """Sampler, size, batch, CFG and seeds, with A1111's labels, defaults and elem_ids."""
    b: dict[str, gr.Button] = {}
    with gr.Row():
        f["sampler_name"] = gr.Dropdown(list(SAMPLER_NAMES), value="DPM++ 2M", label="Sampling method",
                                        elem_id="txt2img_sampling")
        f["scheduler"] = gr.Dropdown(list(SCHEDULE_TYPES), value="Automatic", label="Schedule type",
                                     elem_id="txt2img_scheduler")
        f["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps",
                               min_width=220)
    with gr.Row():
        with gr.Column(scale=4, min_width=200):
            f["width"] = gr.Slider(MIN_SIDE, MAX_SIDE, value=512, step=8, label="Width", elem_id="txt2img_width")
            f["height"] = gr.Slider(MIN_SIDE, MAX_SIDE, value=512, step=8, label="Height",
                                    elem_id="txt2img_height")
        with gr.Column(scale=0, min_width=50):
            b["swap_size"] = tool_button("⇅", "txt2img_res_switch_btn", "Switch width/height")
        with gr.Column(scale=2, min_width=200):
            f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id="txt2img_batch_count")
            f["batch_size"] = gr.Slider(1, MAX_BATCH_SIZE, value=1, step=1, label="Batch size",
                                        elem_id="txt2img_batch_size")
    f["cfg_scale"] = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
    with gr.Row(equal_height=True):
        f["seed"] = gr.Number(value=-1, precision=0, label="Seed", elem_id="txt2img_seed", scale=4)
        b["random_seed"] = tool_button("🎲", "txt2img_random_seed", "Set seed to -1: a new random seed every time")
        b["reuse_seed"] = tool_button("♻️", "txt2img_reuse_seed", "Reuse the seed of the selected output image")
        f["show_extra"] = gr.Checkbox(False, label="Extra", elem_id="txt2img_subseed_show", scale=0,
                                      min_width=90, container=False)
    with gr.Row(visible=False, equal_height=True) as extra_row:
        f["subseed"] = gr.Number(value=-1, precision=0, label="Variation seed", elem_id="txt2img_subseed",
                                 scale=4)
        b["random_subseed"] = tool_button("🎲", "txt2img_random_subseed", "Set variation seed to -1")
        b["reuse_subseed"] = tool_button("♻️", "txt2img_reuse_subseed",
                                         "Reuse the variation seed of the selected output image")
        f["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength",
                                          elem_id="txt2img_subseed_strength", scale=4)
    return b, extra_row


def _build_hires(f: dict[str, Any], upscaler_names: list[str]) -> tuple[gr.Column, gr.Markdown]:
    """A1111's Hires. fix: a checkbox that shows its options (upscaler, steps, denoising, scale or size,
    second-pass sampler, schedule and prompts) and the final size."""
    f["enable_hr"] = gr.Checkbox(False, label="Hires. fix", elem_id="txt2img_hr")
    with gr.Column(visible=False, elem_id="txt2img_hires_fix") as options:
        note = gr.Markdown("", elem_id="txt2img_hires_fix_note")
        with gr.Row():
            f["hr_upscaler"] = gr.Dropdown(upscaler_choices(upscaler_names), value="Latent", label="Upscaler",
                                           elem_id="txt2img_hr_upscaler")
            f["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                  elem_id="txt2img_hires_steps")
            f["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Denoising strength",
                                                elem_id="txt2img_denoising_strength")
        with gr.Row():
            f["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            f["hr_resize_x"] = gr.Slider(0, MAX_SIDE * 2, value=0, step=8, label="Resize width to",
                                         elem_id="txt2img_hr_resize_x")
            f["hr_resize_y"] = gr.Slider(0, MAX_SIDE * 2, value=0, step=8, label="Resize height to",
                                         elem_id="txt2img_hr_resize_y")
        with gr.Row():
            f["hr_sampler_name"] = gr.Dropdown([USE_SAME_SAMPLER, *SAMPLER_NAMES], value=USE_SAME_SAMPLER,
                                               label="Hires sampling method", elem_id="hr_sampler")
            f["hr_scheduler"] = gr.Dropdown([USE_SAME_SCHEDULER, *SCHEDULE_TYPES], value=USE_SAME_SCHEDULER,
                                            label="Hires schedule type", elem_id="hr_scheduler")
        with gr.Row():
            f["hr_prompt"] = gr.Textbox(label="Hires prompt", elem_id="hires_prompt", lines=2,
                                        placeholder="Prompt for hires fix pass.\nLeave empty to use the same "
                                                    "prompt as in first pass.")
            f["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", elem_id="hires_neg_prompt",
                                                 lines=2, placeholder="Negative prompt for hires fix pass.\n"
                                                 "Leave empty to use the same negative prompt as in first pass.")
    return options, note


def hires_note(width: Any, height: Any, scale: Any, resize_x: Any, resize_y: Any) -> str:
    """A1111's "from 512x512 to 1024x1024" line under the Hires. fix checkbox."""
    try:
        target = hires_target(int(width), int(height), float(scale), int(resize_x or 0), int(resize_y or 0))
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    return f"from **{int(width)}x{int(height)}** to **{target.width}x{target.height}**"


def wire(tab: Txt2ImgTab, engine: Any, models: Any, styles_db: Any) -> None:
    f, out = tab.fields, tab.output
    wire_styles(tab.styles, styles_db, tab.toprow.prompt, tab.toprow.negative_prompt)
    wire_extra_networks(tab.networks, models, tab.toprow.prompt)
    wire_token_counters([(tab.toprow.prompt, tab.toprow.prompt_counter),
                         (tab.toprow.negative_prompt, tab.toprow.negative_counter)], f["steps"],
                        lambda: counter_tokenizer(models))
    _wire_generate(tab, engine)
    f["show_extra"].change(lambda show: gr.Row(visible=bool(show)), inputs=f["show_extra"], outputs=tab.extra_row,
                           queue=False)
    f["enable_hr"].change(lambda on: gr.Column(visible=bool(on)), inputs=f["enable_hr"],
                          outputs=tab.hires_options, queue=False)
    size_inputs = [f[name] for name in ("width", "height", "hr_scale", "hr_resize_x", "hr_resize_y")]
    for component in size_inputs:
        component.change(hires_note, inputs=size_inputs, outputs=tab.hires_note, queue=False)
    b = tab.buttons
    b["random_seed"].click(lambda: -1, outputs=f["seed"], queue=False)
    b["random_subseed"].click(lambda: -1, outputs=f["subseed"], queue=False)
    b["swap_size"].click(lambda w, h: (h, w), inputs=[f["width"], f["height"]], outputs=[f["width"], f["height"]],
                         queue=False)
    for name, attribute in (("reuse_seed", "seeds"), ("reuse_subseed", "subseeds")):
        target = f["seed"] if attribute == "seeds" else f["subseed"]
        b[name].click(_reuse(attribute), inputs=[out.results, out.selected], outputs=target, queue=False)


def _reuse(attribute: str):
    def handler(results: Results, selected: int | None):
        index = results.index(selected)
        if index is None:
            gr.Warning("No output image yet: generate first, then select an image")
            return gr.skip()
        return getattr(results, attribute)[index]
    return handler


def _wire_generate(tab: Txt2ImgTab, engine: Any) -> None:
    out = tab.output

    def generate_txt2img(*values: Any):
        try:
            request = txt2img_request_from_fields(dict(zip(TXT2IMG_FIELDS, values, strict=True)))
        except RequestError as exc:
            raise refuse(describe(exc)) from None
        width, height = request.output_size
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Starting…", gr.Image(value=None, visible=False)
        try:
            for event in run_in_thread(lambda report, control: engine.txt2img(request, report, control)):
                if isinstance(event, Progress):
                    preview = gr.skip()
                    if event.preview is not None:
                        preview = gr.Image(value=enlarge_preview(event.preview, width, height), visible=True)
                    yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), progress_html(event.update), preview
                elif isinstance(event, Finished):
                    yield finished_outputs(event)
        except RequestError as exc:
            raise refuse(describe(exc)) from None
        except Exception as exc:  # keep the server up and tell the user what happened
            raise user_error(exc) from None

    outputs = [out.gallery, out.results, out.selected, out.infotext, out.progress, out.preview]
    tab.toprow.generate.click(generate_txt2img, inputs=tab.inputs, outputs=outputs, concurrency_limit=1,
                              concurrency_id=GPU_QUEUE, show_progress="minimal").failure(
        lambda: (gr.skip(), gr.skip(), "", gr.Image(value=None, visible=False)),
        outputs=[out.gallery, out.infotext, out.progress, out.preview], queue=False, show_progress="hidden")
    # Not queued: they must act while the job they stop holds the queue (the running job, never a waiting one).
    tab.toprow.interrupt.click(lambda: engine.interrupt() and None, queue=False, concurrency_limit=None)
    tab.toprow.skip.click(lambda: engine.skip() and None, queue=False, concurrency_limit=None)


def finished_outputs(event: Finished) -> tuple:
    """The gallery (a leading grid gets the first image's seeds, so the lists stay aligned), infotext and line."""
    result = event.result
    lead = getattr(result, "index_of_first_image", 0)
    res = Results(list(result.images), list(result.infotexts), result.seeds[:1] * lead + list(result.seeds),
                  result.subseeds[:1] * lead + list(result.subseeds), list(result.paths))
    text = finished_text(len(res.images) - lead, event.elapsed, result.interrupted, result.skipped_batches,
                         list(result.notices))
    info = res.infotexts[0] if res.infotexts else ""
    return (gr.Gallery(value=res.gallery_value(), selected_index=None), res, 0, info, text,
            gr.Image(value=None, visible=False))


def wire_png_info_send(tab: Txt2ImgTab, button: gr.Button, png_image: gr.Image, main_tabs: gr.Tabs) -> None:
    """PNG Info's "Send to txt2img": the txt2img tab, its fields filled from the picture's infotext."""
    from pipelines.io.infotext import parse_infotext
    from pipelines.io.outputs import read_infotext

    fields = [tab.fields[name] for name in TXT2IMG_FIELDS]

    def paste(image: Any):
        if image is None:
            gr.Warning("Drop an image into PNG Info first")
            return [gr.skip()] * (len(fields) + 3)
        text = read_infotext(image)
        if not text:
            gr.Warning("This image has no generation parameters to send")
            return [gr.Tabs(selected=TAB_ID), *[gr.skip()] * (len(fields) + 2)]
        updates = txt2img_fields_from_infotext(parse_infotext(text))
        for message in updates.warnings:
            gr.Warning(f"Not pasted: {message}")
        values = [updates.values[name] if name in updates.values else gr.skip() for name in TXT2IMG_FIELDS]
        show_hr = gr.Column(visible=bool(updates.values.get("enable_hr")))
        show_extra = gr.Row(visible=bool(updates.values.get("show_extra")))
        return [gr.Tabs(selected=TAB_ID), *values, show_hr, show_extra]

    button.click(paste, inputs=png_image, outputs=[main_tabs, *fields, tab.hires_options, tab.extra_row],
                 queue=False)
