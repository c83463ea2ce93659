"""The Batch sub-tab (A1111's): every picture of a folder on the server through img2img with the panel's
parameters, the inpaint controls for its masks, and the chosen script. The work is
pipelines/generation/img2img_batch.py; this module only turns the tab's values into its options and hands
Generate a job. Folders are paths on the server, inside the data directory (see check_folder)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.img2img_batch import PNG_INFO_PROPS, BatchOptions, run_batch
from pipelines.launch_flags import Settings
from ui.modes import ModeTab
from ui.user_errors import refuse
from ui.values import RESIZE_BY, describe_error, request_from_fields

NAME, LABEL, TAB_ID = "batch", "Batch", "img2img_batch_tab"
SEND_LABEL = None  # no "Send to" button: this tab reads a folder, not a picture
NOTE = ("Process images in a directory on the same machine where the server is running (inside the data "
        "directory: {data_dir}; relative paths start there).<br>Use an empty output directory to save pictures "
        "normally instead of writing to the output directory.<br>Add inpaint batch mask directory to enable "
        "inpaint batch processing.")


def read_batch(*values: Any) -> dict[str, Any]:
    """No init image: the pictures come from the folder (Interrogate and "Send to" have nothing to take)."""
    return {}


def batch_options(input_dir: str, output_dir: str, mask_dir: str, use_png_info: bool, png_info_dir: str,
                  png_info_props: list[str] | None, scale: float | None = None) -> BatchOptions:
    return BatchOptions(input_dir=input_dir or "", output_dir=output_dir or "", mask_dir=mask_dir or "",
                        use_png_info=bool(use_png_info), png_info_props=tuple(png_info_props or ()),
                        png_info_dir=png_info_dir or "", scale_by=scale)


def make_job(settings: Settings):
    """Generate's hook for this tab: (engine, tab values, panel values, resize tab, script values, scripts
    panel) -> (the panel's request, the job). Every picture's run is the panel's request with the picture
    (and its mask) in it, run by the chosen script or engine.img2img, all as one job of the queue."""

    def job_for(engine: Any, values: tuple, field_values: dict[str, Any], resize_tab: str, script_values: Any,
                scripts: Any):
        try:
            # The panel's values checked once; the placeholder picture is replaced by each file's.
            base = request_from_fields(field_values, Image.new("RGB", (64, 64)), resize_tab, image_label=LABEL)
            scale = float(field_values["scale"]) if resize_tab == RESIZE_BY else None
            options = batch_options(*values, scale=scale)
            if not options.input_dir.strip():
                raise RequestError("init_image", "no input directory in the Batch tab: type a folder's path")
        except RequestError as exc:
            raise refuse(describe_error(exc)) from None
        scripts.job(engine, base, script_values)  # a bad script value is refused now, before anything runs

        def run_picture(request, on_progress, control):
            return scripts.job(engine, request, script_values)(on_progress, control)

        def job(on_progress, control):
            with engine.job(control) as held:
                return run_batch(run_picture, base, options, settings.data_dir, on_progress, held, engine.limits)
        return base, job
    return job_for


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        gr.HTML(f"<p style='padding-bottom: 1em;'>{NOTE.format(data_dir=settings.data_dir)}</p>")
        input_dir = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
        output_dir = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
        mask_dir = gr.Textbox(label="Inpaint batch mask directory (required for inpaint batch processing only)",
                              elem_id="img2img_batch_inpaint_mask_dir")
        with gr.Accordion("PNG info", open=False):
            use_png_info = gr.Checkbox(label="Append png info to prompts", elem_id="img2img_batch_use_png_info")
            png_info_dir = gr.Textbox(label="PNG info directory", placeholder="Leave empty to use input directory",
                                      elem_id="img2img_batch_png_info_dir")
            png_info_props = gr.CheckboxGroup(list(PNG_INFO_PROPS), label="Parameters to take from png info",
                                              info="Prompts from png info will be appended to prompts set in ui.",
                                              elem_id="img2img_batch_png_info_props")
    inputs = [input_dir, output_dir, mask_dir, use_png_info, png_info_dir, png_info_props]
    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=inputs, read=read_batch, image_input=None, masks=True,
                   run_job=make_job(settings))
