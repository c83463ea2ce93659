"""Assemble the Blocks: top bar, the img2img tab (prompt row, sub-tabs, shared parameters, output) and
PNG Info, then wire the events. The UI only builds Img2ImgRequest values and calls the engine's public
methods."""

from __future__ import annotations

import json
import logging
from typing import Any

import gradio as gr

from pipelines.fields import MAX_SIDE, MIN_SIDE
from pipelines.generation.engine import Engine
from pipelines.images.image_ops import scaled_size
from pipelines.io.outputs import read_infotext
from pipelines.io.styles import StyleDatabase
from pipelines.launch_flags import Settings
from pipelines.models.model_manager import ModelManager
from scripts.sd_upscale import upscaler_choices
from ui import (
    tab_batch,
    tab_extras,
    tab_img2img,
    tab_inpaint,
    tab_inpaint_sketch,
    tab_inpaint_upload,
    tab_png_info,
    tab_scripts,
    tab_sketch,
    tab_txt2img,
)
from ui.extra_networks_panel import build_extra_networks_panel, wire_extra_networks
from ui.generation import Finished, Progress, enlarge_preview, request_for, run_in_thread, user_error
from ui.inpaint_params import InpaintPanel, build_inpaint_panel, wire_inpaint_panel
from ui.interrogate_button import build_interrogate_button, wire_interrogate
from ui.modes import ModeTab, wire_upload_checks
from ui.output_panel import OutputPanel, Results, build_output_panel
from ui.params import CLAMP_NOTE_JS, TOOLTIPS, ParamsPanel, build_params_panel
from ui.scripts_panel import ScriptsPanel, build_scripts_panel, wire_script_paste, wire_script_tabs
from ui.send_to import send_outputs
from ui.settings_panel import SettingsPanel, build_settings_panel
from ui.styles_panel import StylesRow, build_styles_row, wire_styles
from ui.token_counter import counter_tokenizer, wire_token_counters
from ui.top_bar import GPU_QUEUE, build_top_bar
from ui.toprow import SHORTCUTS_JS, Toprow, build_toprow
from ui.values import FIELD_NAMES, finished_text, image_of_value, progress_html, scale_text

log = logging.getLogger(__name__)

MAIN_TAB_ID = "img2img"
# Sub-tab modules of the img2img tab, in A1111's order.
MODE_MODULES = (tab_img2img, tab_sketch, tab_inpaint, tab_inpaint_sketch, tab_inpaint_upload, tab_batch)
MODE_MODULES += tab_scripts.TABS  # Outpaint, Loopback, SD upscale: sub-tabs that pick their script
# A "Send to" button per sub-tab that takes a picture (SEND_LABEL None: Batch reads a folder instead).
SEND_TARGETS = [(m.NAME, getattr(m, "SEND_LABEL", f"Send to {m.NAME}")) for m in MODE_MODULES
                if getattr(m, "SEND_LABEL", "") is not None]
EXTRAS_TARGET = [(tab_extras.TAB_ID, tab_extras.SEND_LABEL)]  # the other top-level tab a picture is sent to
# Gradio's cache (uploads, shown results) is swept every hour of files older than 6 h, and emptied when the
# server stops, so uploads do not pile up; saved outputs live in outputs/ and are never touched.
CACHE_CLEANUP = (3600, 6 * 3600)  # (how often, how old) in seconds: gr.Blocks(delete_cache=...)

PAGE_CSS = """
.tool { max-width: 2.8em !important; min-width: 2.8em !important; align-self: end; }
#img2img_generate { min-height: 5.5em; }
#img2img_progress { min-height: 4.5em; }  /* room for the bar and its line from the start: nothing jumps */
#img2img_progress progress { width: 100%; height: 1.1em; accent-color: var(--color-accent); }
#img2img_output_stack { position: relative; }
#img2img_preview { position: absolute !important; top: 0; left: 0; right: 0; z-index: 5; }
#img2img_steps label, #img2img_batch_count label, #img2img_batch_size label, #img2img_cfg_scale label,
#img2img_denoising_strength label { white-space: nowrap; }
#img2img_subseed_show { align-self: center; }
.clamp-note { color: var(--color-accent); font-size: var(--text-sm); padding-top: 2px; }
"""


def page_js() -> str:
    """Runs once on page load: keyboard shortcuts and hover hints on the icon buttons."""
    hints = json.dumps(TOOLTIPS)
    return f"""() => {{
{SHORTCUTS_JS}
{CLAMP_NOTE_JS}
const hints = {hints};
const apply = () => {{ for (const [id, text] of Object.entries(hints)) {{
  const el = document.getElementById(id); if (el && el.title !== text) el.title = text; }} }};
new MutationObserver(apply).observe(document.body, {{childList: true, subtree: true}});
apply();
}}"""


def launch_options() -> dict[str, Any]:
    """Page-level options that Gradio 6 takes in launch()."""
    return {"css": PAGE_CSS + tab_txt2img.CSS, "js": page_js()}


def build_ui(engine: Engine, models: ModelManager, settings: Settings, interrogator: Any = None) -> gr.Blocks:
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as blocks:
        build_top_bar(models, engine.queue)
        # A1111's order: txt2img first. img2img stays the tab shown on load (this project started as it).
        with gr.Tabs(elem_id="tabs", selected=tab_txt2img.TAB_ID) as main_tabs:  # A1111 opens on txt2img
            txt2img = tab_txt2img.build(models, engine.styles or StyleDatabase(settings.styles_path),
                                        upscaler_choices(settings.models_dir), EXTRAS_TARGET)
            with gr.Tab("img2img", id=MAIN_TAB_ID, elem_id="tab_img2img"):
                toprow = build_toprow()
                styles = build_styles_row(engine.styles or StyleDatabase(settings.styles_path))
                networks = build_extra_networks_panel(models)  # A1111's Lora / Textual Inversion tabs
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, elem_id="img2img_settings"):
                        mode_state = gr.State(MODE_MODULES[0].NAME)
                        with gr.Tabs(elem_id="mode_img2img", overflow_behavior="wrap") as mode_tabs:
                            modes = [module.build(settings) for module in MODE_MODULES]
                        inpaint = build_inpaint_panel()  # shown on the inpaint sub-tabs
                        params = build_params_panel()
                        settings_panel = build_settings_panel()  # A1111's per-run img2img options
                        scripts = build_scripts_panel(settings.models_dir, interrogator)
                    with gr.Column(scale=1, elem_id="img2img_results"):
                        output = build_output_panel(SEND_TARGETS, EXTRAS_TARGET)
            extras = tab_extras.build(settings)  # A1111's order: img2img, Extras, PNG Info
            png_info = tab_png_info.build(SEND_TARGETS, EXTRAS_TARGET + [(tab_txt2img.TAB_ID, tab_txt2img.SEND_LABEL)])

        fields = _ordered_fields(toprow, styles, params, inpaint, settings_panel)
        wire_styles(styles, engine.styles or StyleDatabase(settings.styles_path), toprow.prompt,
                    toprow.negative_prompt)
        wire_extra_networks(networks, models, toprow.prompt)
        ui = _Wiring(engine, modes, fields, params, output, mode_state, scripts)
        ui.wire_generation(toprow)
        ui.wire_mode_tabs()
        for mode in modes:
            wire_upload_checks(mode)  # a file that is not a readable image is refused as it is uploaded
        ui.wire_seed_buttons()
        counters = [(toprow.prompt, toprow.prompt_counter), (toprow.negative_prompt, toprow.negative_counter)]
        wire_token_counters(counters, params.fields["steps"], lambda: counter_tokenizer(models),
                            settings_panel.fields.get("emphasis"))
        ui.wire_send_buttons(main_tabs, mode_tabs, output, png_info, txt2img.output)
        tab_txt2img.wire(txt2img, engine, models, engine.styles or StyleDatabase(settings.styles_path))
        tab_txt2img.wire_png_info_send(txt2img, png_info.other_buttons[tab_txt2img.TAB_ID], png_info.image,
                                       main_tabs)
        tab_extras.wire_img2img_sends(extras, main_tabs, txt2img.output, None)  # txt2img's "Send to extras"
        for mode in (m for m in modes if m.name in txt2img.output.send_buttons):  # inpaint options with the tab
            txt2img.output.send_buttons[mode.name].click(
                lambda res, masks=mode.masks: gr.Column(visible=masks) if res.images else gr.skip(),
                inputs=txt2img.output.results, outputs=inpaint.group, queue=False)
        tab_extras.wire(extras, engine, settings)
        tab_extras.wire_img2img_sends(extras, main_tabs, output, png_info)  # "Send to extras"
        wire_inpaint_panel(inpaint, modes, output, png_info)
        wire_script_tabs(scripts, modes, tab_scripts.TAB_SCRIPTS)
        wire_script_paste(scripts, output, png_info, tab_scripts.TAB_SCRIPTS)
        interrogate = build_interrogate_button(toprow.generate)
        wire_interrogate(interrogate, interrogator, modes, mode_state, toprow.prompt, engine.queue)
    return blocks


def _ordered_fields(toprow: Toprow, styles: StylesRow, params: ParamsPanel, inpaint: InpaintPanel,
                   settings_panel: SettingsPanel) -> list[Any]:
    by_name = {"prompt": toprow.prompt, "negative_prompt": toprow.negative_prompt, "styles": styles.dropdown,
               **params.fields,
               **inpaint.fields, **settings_panel.fields}
    assert set(by_name) == set(FIELD_NAMES), set(by_name) ^ set(FIELD_NAMES)
    return [by_name[name] for name in FIELD_NAMES]


class _Wiring:
    """Event handlers over the built widgets. Handlers get widget values and return widget updates."""

    def __init__(self, engine: Engine, modes: list[ModeTab], fields: list[Any], params: ParamsPanel,
                 output: OutputPanel, mode_state: gr.State, scripts: ScriptsPanel):
        self.engine, self.modes, self.fields, self.params = engine, modes, fields, params
        self.scripts = scripts  # the Script dropdown: Generate runs the chosen script instead of img2img
        self.output, self.mode_state = output, mode_state
        self.mode_inputs = [c for m in modes for c in m.inputs]
        self.image_sizes = gr.State({})  # mode name -> (width, height) of its image, or None

    def _mode_values(self, mode_name: str, values: tuple) -> tuple[ModeTab, tuple]:
        """The active sub-tab and its own slice of the values of all sub-tabs' inputs."""
        start = 0
        for mode in self.modes:
            if mode.name == mode_name:
                return mode, values[start:start + len(mode.inputs)]
            start += len(mode.inputs)
        raise gr.Error(f"unknown img2img mode {mode_name!r}")

    # 1. Generate / Interrupt / Skip ------------------------------------------------------------------------
    def wire_generation(self, toprow: Toprow) -> None:
        out, sizes, note = self.output, self.image_sizes, self.params.scale_note
        n_modes, n_fields = len(self.mode_inputs), len(FIELD_NAMES)

        def generate(mode_name: str, resize_tab: str, known: dict, *values: Any):
            mode, mode_values = self._mode_values(mode_name, values[:n_modes])
            field_values = dict(zip(FIELD_NAMES, values[n_modes:n_modes + n_fields], strict=True))
            if mode.run_job is not None:  # Batch: a folder of pictures, one run each (ui/tab_batch.py)
                request, job = mode.run_job(self.engine, mode_values, field_values, resize_tab,
                                            values[n_modes + n_fields:], self.scripts)
            else:
                request = request_for(mode, mode_values, field_values, resize_tab)
                job = self.scripts.job(self.engine, request, values[n_modes + n_fields:])
                known = {**known, mode.name: request.init_image.size}
            skip4 = (gr.skip(),) * 4
            note_text = scale_text(known.get(mode.name), field_values["scale"])
            yield *skip4, "Starting…", gr.Image(value=None, visible=False), known, note_text
            try:
                for event in run_in_thread(job):
                    if isinstance(event, Progress):
                        preview = gr.skip()
                        if event.preview is not None:
                            big = enlarge_preview(event.preview, request.width, request.height)
                            preview = gr.Image(value=big, visible=True)
                        yield *skip4, progress_html(event.update), preview, gr.skip(), gr.skip()
                    elif isinstance(event, Finished):
                        yield *self._finished(event), gr.skip(), gr.skip()
            except Exception as exc:  # keep the server up and tell the user what happened
                raise user_error(exc) from None

        inputs = [self.mode_state, self.params.resize_tab, sizes, *self.mode_inputs, *self.fields,
                  *self.scripts.inputs]
        outputs = [out.gallery, out.results, out.selected, out.infotext, out.progress, out.preview,
                   sizes, note]
        toprow.generate.click(generate, inputs=inputs, outputs=outputs, concurrency_limit=1,
                              concurrency_id=GPU_QUEUE, show_progress="minimal").failure(
            after_failure, outputs=[out.gallery, out.infotext, out.progress, out.preview, note], queue=False,
            show_progress="hidden")
        # Not queued: they must act while the job they stop holds the queue. They reach the job queue's
        # RUNNING job (the UI's or the API's), never one still waiting.
        def interrupt() -> None:
            self.engine.interrupt()

        def skip() -> None:
            self.engine.skip()

        toprow.interrupt.click(interrupt, queue=False, concurrency_limit=None)
        toprow.skip.click(skip, queue=False, concurrency_limit=None)

    @staticmethod
    def _finished(event: Finished) -> tuple:
        result = event.result
        # A leading grid (A1111's) gets the first image's seeds, so the lists stay aligned with the gallery.
        lead = getattr(result, "index_of_first_image", 0)
        res = Results(list(result.images), list(result.infotexts), result.seeds[:1] * lead + list(result.seeds),
                      result.subseeds[:1] * lead + list(result.subseeds), list(result.paths))
        text = finished_text(len(res.images), event.elapsed, result.interrupted, result.skipped_batches,
                             list(result.notices))
        info = res.infotexts[0] if res.infotexts else ""
        return (gr.Gallery(value=res.gallery_value(), selected_index=None), res, 0, info, text,
                gr.Image(value=None, visible=False))

    # 2. Sub-tabs, "Resize by" note, size detection ----------------------------------------------------------
    def wire_mode_tabs(self) -> None:
        """Each sub-tab's image size is kept in a per-session gr.State, so the "Resize by" note and 📐 do not
        need the images. A plain image reports its size when it changes; an ImageEditor only when an image is
        sent to it or at Generate: any listener that reads an ImageEditor makes the browser upload all its
        layers again at every later update of the page (3 files per progress step)."""
        params, sizes = self.params, self.image_sizes
        scale = params.fields["scale"]

        def note(mode_name: str, scale_value: float, known: dict) -> str:
            return scale_text(known.get(mode_name), scale_value)

        for mode in self.modes:
            mode.tab.select(lambda name=mode.name: name, outputs=self.mode_state, queue=False).then(
                note, inputs=[self.mode_state, scale, sizes], outputs=params.scale_note, queue=False)
            if not isinstance(mode.image_input, gr.Image):
                continue

            def remember(value: Any, mode_name: str, scale_value: float, known: dict, mode=mode):
                image = image_of_value(value)
                known = {**known, mode.name: image.size if image is not None else None}
                return known, note(mode_name, scale_value, known)

            mode.image_input.change(remember, inputs=[mode.image_input, self.mode_state, scale, sizes],
                                    outputs=[sizes, params.scale_note], queue=False)
        scale.change(note, inputs=[self.mode_state, scale, sizes], outputs=params.scale_note, queue=False)

        def detect(mode_name: str, known: dict):
            size = known.get(mode_name)
            if size is None:
                gr.Warning("No image to take the size from")
                return gr.skip(), gr.skip()
            width, height = scaled_size(*size, 1.0)
            return min(MAX_SIDE, max(MIN_SIDE, width)), min(MAX_SIDE, max(MIN_SIDE, height))

        params.detect_size.click(detect, inputs=[self.mode_state, sizes],
                                 outputs=[params.fields["width"], params.fields["height"]], queue=False)

    # 3. Seed buttons ----------------------------------------------------------------------------------------
    def wire_seed_buttons(self) -> None:
        out, params = self.output, self.params

        def reuse(attribute: str):
            def handler(results: Results, selected: int | None):
                index = results.index(selected)
                if index is None:
                    gr.Warning("No output image yet: generate first, then select an image")
                    return gr.skip()
                return getattr(results, attribute)[index]
            return handler

        params.reuse_seed.click(reuse("seeds"), inputs=[out.results, out.selected],
                                outputs=params.fields["seed"], queue=False)
        params.reuse_subseed.click(reuse("subseeds"), inputs=[out.results, out.selected],
                                   outputs=params.fields["subseed"], queue=False)

    # 4. Send to img2img / sketch ----------------------------------------------------------------------------
    def wire_send_buttons(self, main_tabs: gr.Tabs, mode_tabs: gr.Tabs, output: OutputPanel,
                          png_info: tab_png_info.PngInfoTab, *other_outputs: OutputPanel) -> None:
        """`other_outputs`: other tabs' galleries (txt2img) whose "Send to" buttons fill the same sub-tabs."""
        params, sizes = self.params, self.image_sizes
        scale = params.fields["scale"]
        for target in (mode for mode in self.modes if mode.name in output.send_buttons):
            outputs = [main_tabs, mode_tabs, self.mode_state, target.image_input, *self.fields,
                       params.resize_tabs, params.resize_tab, sizes, params.scale_note]
            n_outputs = len(outputs)

            def from_gallery(results: Results, selected: int | None, scale_value: float, known: dict,
                             target=target, n_outputs=n_outputs):
                index = results.index(selected)
                if index is None:
                    gr.Warning("No output image to send: generate first")
                    return [gr.skip()] * n_outputs
                return send_outputs(results.images[index], results.infotexts[index], target,
                                    list(FIELD_NAMES), MAIN_TAB_ID, scale_value, known)

            def from_png_info(image, scale_value: float, known: dict, target=target, n_outputs=n_outputs):
                if image is None:
                    gr.Warning("Drop an image into PNG Info first")
                    return [gr.skip()] * n_outputs
                return send_outputs(image, read_infotext(image), target, list(FIELD_NAMES), MAIN_TAB_ID,
                                    scale_value, known)

            gallery_inputs = [output.results, output.selected, scale, sizes]
            output.send_buttons[target.name].click(from_gallery, inputs=gallery_inputs, outputs=outputs,
                                                   queue=False)
            # Show the img2img tab first, then fill it: an ImageEditor first shown in the same update that
            # gives it an image stays blank (0x0 canvas) when its page was hidden.
            png_info.send_buttons[target.name].click(
                _show_main_tab, inputs=png_info.image, outputs=main_tabs, queue=False).then(
                from_png_info, inputs=[png_info.image, scale, sizes], outputs=outputs, queue=False)
            for other in (o for o in other_outputs if target.name in o.send_buttons):  # the img2img tab was hidden
                other.send_buttons[target.name].click(lambda: gr.Tabs(selected=MAIN_TAB_ID), outputs=main_tabs,
                                                      queue=False).then(
                    from_gallery, inputs=[other.results, other.selected, scale, sizes], outputs=outputs,
                    queue=False)


def after_failure() -> tuple:
    """After a failed run (the message is already shown): the red "Error" badges on the run's outputs go (this
    update completes them), and so do the unfinished progress text and the preview."""
    return gr.skip(), gr.skip(), "", gr.Image(value=None, visible=False), gr.skip()


def _show_main_tab(image: Any) -> Any:
    """Step 1 of PNG Info's "Send to": switch to the img2img tab when there is an image to send."""
    return gr.Tabs(selected=MAIN_TAB_ID) if image is not None else gr.skip()


__all__ = ["build_ui", "launch_options"]
