"""The Extras tab (A1111's modules/ui_postprocessing.py with its "Upscale" script): Single Image / Batch Process
(files) / Batch from Directory, resize Scale by / Scale to, Upscaler 1, Upscaler 2 and its visibility, Generate,
a gallery and the postprocessing text. The work is pipelines/generation/extras.run_extras: one job in the
engine's queue, saved to outputs/extras-images/.

Folders typed into "Batch from Directory" are confined to the data directory, as the output-folder options
are (pipelines/options.samples_dir): a server reachable by others never reads or writes elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.extras import (
    ExtrasRequest,
    ExtrasResizeMode,
    ExtrasSource,
    folder_sources,
    html_info,
    run_extras,
)
from pipelines.models.upscalers import list_upscalers
from pipelines.options import samples_dir
from ui.generation import user_error
from ui.modes import check_upload, tolerant
from ui.top_bar import GPU_QUEUE
from ui.user_errors import refuse
from ui.values import UnreadableImage, unreadable_message

TAB_ID = "extras"
LABEL = "Extras"
SEND_LABEL = "Send to extras"
MODES = ("single_image", "batch_process", "batch_from_directory")  # the sub-tab ids, A1111's
RESIZE_TABS = ("scale_by", "scale_to")


@dataclass
class ExtrasTab:
    tab: gr.Tab
    modes: gr.Tabs
    mode: gr.State  # which sub-tab is shown (MODES)
    image: gr.Image
    files: gr.File
    input_dir: gr.Textbox
    output_dir: gr.Textbox
    show_results: gr.Checkbox
    resize_tab: gr.State  # RESIZE_TABS
    settings: list[Any]  # scale by, max side, width, height, crop, upscaler 1, upscaler 2, visibility
    generate: gr.Button
    interrupt: gr.Button
    gallery: gr.Gallery
    info: gr.HTML


def build(settings: Any) -> ExtrasTab:
    """The tab's widgets (inside the caller's gr.Tabs), A1111's labels and elem_ids."""
    names = [u.name for u in list_upscalers(settings.models_dir)]
    with gr.Tab(LABEL, id=TAB_ID, elem_id="tab_extras") as tab:
        mode, resize_tab = gr.State(MODES[0]), gr.State(RESIZE_TABS[0])
        with gr.Row(equal_height=False):
            with gr.Column():
                with gr.Tabs(elem_id="mode_extras") as modes:
                    with gr.Tab("Single Image", id=MODES[0], elem_id="extras_single_tab") as single_tab:
                        # image_mode=None: the file as PIL opened it, its PNG text ("parameters") kept
                        image = tolerant(gr.Image(label="Source", elem_id="extras_image", type="pil",
                                                  image_mode=None, sources=["upload", "clipboard"], height=400,
                                                  format="png"),
                                         settings)
                    with gr.Tab("Batch Process", id=MODES[1], elem_id="extras_batch_process_tab") as files_tab:
                        files = gr.File(label="Batch Process", file_count="multiple", type="filepath",
                                        elem_id="extras_image_batch")
                    with gr.Tab("Batch from Directory", id=MODES[2],
                                elem_id="extras_batch_directory_tab") as dir_tab:
                        input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                               placeholder="A folder inside the data directory, e.g. inputs/photos")
                        output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                                placeholder="Leave blank to save images to the default path.")
                        show_results = gr.Checkbox(label="Show result images", value=True,
                                                   elem_id="extras_show_extras_results")
                controls = _build_upscale_controls(names, resize_tab)
            with gr.Column():
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="extras_generate", scale=4)
                    interrupt = gr.Button("Interrupt", elem_id="extras_interrupt", scale=1)
                gallery = gr.Gallery(label="Output", elem_id="extras_gallery", columns=4, height=512,
                                     object_fit="contain", format="png", interactive=False, preview=True)
                info = gr.HTML(elem_id="html_info_extras")
    for tab_item, name in zip((single_tab, files_tab, dir_tab), MODES):
        tab_item.select(lambda name=name: name, outputs=mode, queue=False)
    image.upload(lambda value: check_upload(value, LABEL, "Source"), inputs=image, outputs=image,
                 concurrency_limit=None, show_progress="hidden")
    return ExtrasTab(tab, modes, mode, image, files, input_dir, output_dir, show_results, resize_tab, controls,
                     generate, interrupt, gallery, info)


def _build_upscale_controls(names: list[str], resize_tab: gr.State) -> list[Any]:
    """A1111's "Upscale" block: Scale by / Scale to tabs, the two upscalers and the second's visibility."""
    with gr.Accordion("Upscale", open=True, elem_id="extras_upscale"):
        with gr.Tabs(elem_id="extras_resize_mode"):
            with gr.Tab("Scale by", id=RESIZE_TABS[0], elem_id="extras_scale_by_tab") as by_tab:
                with gr.Row():
                    scale = gr.Slider(1.0, 8.0, value=4, step=0.05, label="Resize", elem_id="extras_upscaling_resize",
                                      scale=4)
                    max_side = gr.Number(label="Max side length", value=0, precision=0, minimum=0, step=8,
                                         elem_id="extras_upscale_max_side_length", min_width=160,
                                         info="0 = no limit; a longer side is brought down to it")
            with gr.Tab("Scale to", id=RESIZE_TABS[1], elem_id="extras_scale_to_tab") as to_tab:
                with gr.Row():
                    with gr.Column(scale=4):
                        width = gr.Slider(64, 8192, value=512, step=8, label="Width",
                                          elem_id="extras_upscaling_resize_w")
                        height = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                           elem_id="extras_upscaling_resize_h")
                    crop = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
        upscaler_1 = gr.Dropdown(names, value=names[0], label="Upscaler 1", elem_id="extras_upscaler_1")
        with gr.Row():
            upscaler_2 = gr.Dropdown(names, value=names[0], label="Upscaler 2", elem_id="extras_upscaler_2")
            visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                   elem_id="extras_upscaler_2_visibility")
    by_tab.select(lambda: RESIZE_TABS[0], outputs=resize_tab, queue=False)
    to_tab.select(lambda: RESIZE_TABS[1], outputs=resize_tab, queue=False)
    return [scale, max_side, width, height, crop, upscaler_1, upscaler_2, visibility]


# Reading the widgets -----------------------------------------------------------------------------------------
def request_from_values(resize_tab: str, scale: float, max_side: float | None, width: float, height: float,
                        crop: bool, upscaler_1: str, upscaler_2: str, visibility: float) -> ExtrasRequest:
    mode = ExtrasResizeMode.SCALE_TO if resize_tab == RESIZE_TABS[1] else ExtrasResizeMode.SCALE_BY
    return ExtrasRequest(mode, float(scale), int(width), int(height), bool(crop), upscaler_1 or "None",
                         upscaler_2 or "None", float(visibility or 0), int(max_side or 0))


def sources_for(mode: str, image: Any, files: list[str] | None, input_dir: str,
                data_dir: Path) -> list[ExtrasSource]:
    """What the active sub-tab holds, as sources; RequestError naming what is missing."""
    if mode == MODES[1]:
        if not files:
            raise RequestError("image_folder", "no files in Batch Process: add one or more pictures first")
        return [ExtrasSource(path=Path(f), name=Path(f).name, label=Path(f).name) for f in files]
    if mode == MODES[2]:
        if not (input_dir or "").strip():
            raise RequestError("input_dir", "input directory not selected")
        folder = samples_dir(data_dir, input_dir, "input_dir")
        if not folder.is_dir():
            raise RequestError("input_dir", f"{input_dir!r} is not a folder")
        sources = folder_sources(folder)
        if not sources:
            raise RequestError("input_dir", f"{input_dir!r} holds no files")
        return sources
    if image is None:
        raise RequestError("image", "no image in Single Image: upload, drop or paste one first")
    if isinstance(image, UnreadableImage):
        raise RequestError("image", unreadable_message(LABEL, reason=image.reason))
    return [ExtrasSource(image=image, label="Source")]


def run_tab(engine: Any, data_dir: Path, mode: str, resize_tab: str, image: Any, files: list[str] | None,
            input_dir: str, output_dir: str, show_results: bool, *controls: Any) -> tuple[Any, str]:
    """Generate: (gallery value, html info). A1111 saves every result; a folder batch may hide them. The gallery
    shows the saved files (a download keeps their PNG text) when they are in outputs/, which the page may serve."""
    try:
        request = request_from_values(resize_tab, *controls)
        sources = sources_for(mode, image, files, input_dir, data_dir)
        outdir = None
        if mode == MODES[2] and (output_dir or "").strip():
            outdir = samples_dir(data_dir, output_dir, "output_dir")
        result = run_extras(engine, request, sources, outdir=outdir)
    except Exception as exc:  # a readable message; the server keeps running
        raise user_error(exc) from None
    if not result.images and not result.notices and not result.interrupted:
        raise refuse("Nothing was upscaled")
    for notice in result.notices:
        gr.Warning(notice, duration=15)
    shown = result.images if mode != MODES[2] or show_results else []
    served = Path(engine.outputs_root).resolve()
    saved = [p for p in result.paths if served in Path(p).resolve().parents]
    gallery = [str(p) for p in saved] if shown and len(saved) == len(shown) else shown
    text = html_info(result.infotexts[-1] if result.infotexts else "")
    notes = result.notices + (["Interrupted: the pictures done so far are saved"] if result.interrupted else [])
    if notes:
        text += html_info("\n".join(notes))
    return gallery, text


def wire(tab: ExtrasTab, engine: Any, settings: Any) -> None:
    def generate(*values: Any) -> tuple[Any, str]:
        return run_tab(engine, settings.data_dir, *values)

    inputs = [tab.mode, tab.resize_tab, tab.image, tab.files, tab.input_dir, tab.output_dir, tab.show_results,
              *tab.settings]
    tab.generate.click(generate, inputs=inputs, outputs=[tab.gallery, tab.info], concurrency_limit=1,
                       concurrency_id=GPU_QUEUE)
    # Not queued: it must act while the job it stops holds the queue; it stops the RUNNING job before its next
    # picture (whichever front end started it, as img2img's Interrupt).
    tab.interrupt.click(lambda: engine.interrupt() and None, queue=False, concurrency_limit=None)


# "Send to extras" ---------------------------------------------------------------------------------------------
def image_for_extras(image: Image.Image, infotext: str | None) -> Image.Image:
    """A copy carrying its generation text as "parameters", which the Extras output keeps (A1111)."""
    sent = image.copy()
    if infotext:
        sent.info["parameters"] = infotext
    return sent


def wire_send(button: gr.Button, main_tabs: gr.Tabs, tab: ExtrasTab, pick: Any, inputs: list[Any]) -> None:
    """`button` puts pick(*inputs) (a PIL image, or None when there is nothing to send) into Single Image and
    shows the tab. Step 1 switches tabs, step 2 fills the image, so the image lands in a visible tab."""

    def show(*values: Any) -> tuple[Any, Any, str]:
        if pick(*values) is None:
            gr.Warning("No image to send to extras")
            return gr.skip(), gr.skip(), gr.skip()
        return gr.Tabs(selected=TAB_ID), gr.Tabs(selected=MODES[0]), MODES[0]

    def fill(*values: Any) -> Any:
        image = pick(*values)
        return image if image is not None else gr.skip()

    button.click(show, inputs=inputs, outputs=[main_tabs, tab.modes, tab.mode], queue=False).then(
        fill, inputs=inputs, outputs=tab.image, queue=False)


def wire_img2img_sends(tab: ExtrasTab, main_tabs: gr.Tabs, output: Any, png_info: Any) -> None:
    """img2img's gallery and PNG Info "Send to extras" buttons (their `other_buttons["extras"]`), if present."""
    gallery_button = getattr(output, "other_buttons", {}).get(TAB_ID)
    if gallery_button is not None:
        def from_gallery(results: Any, selected: int | None) -> Image.Image | None:
            index = results.index(selected)
            return None if index is None else image_for_extras(results.images[index], results.infotexts[index])

        wire_send(gallery_button, main_tabs, tab, from_gallery, [output.results, output.selected])
    png_button = getattr(png_info, "other_buttons", {}).get(TAB_ID)
    if png_button is not None:  # PNG Info holds the file as opened: its text chunks are still in .info
        wire_send(png_button, main_tabs, tab, lambda image: image, [png_info.image])
