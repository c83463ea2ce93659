"""The "Interrogate CLIP" button under Generate: a prompt inferred from the active sub-tab's image (BLIP
caption + CLIP-ranked terms) replaces the prompt box, as in A1111. It is a job in the engine's job queue
(one job at a time: it shares the machine with generation and the API's jobs). Missing models give a
message saying what goes in models/BLIP and models/CLIP; nothing crashes."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from PIL import Image

from pipelines.generation.queue import INTERROGATE, JobQueue
from pipelines.images import image_ops
from pipelines.models.interrogate import InterrogatorUnavailable
from ui.modes import ModeTab
from ui.top_bar import GPU_QUEUE
from ui.user_errors import failure, refuse
from ui.values import image_of_value

log = logging.getLogger(__name__)


def build_interrogate_button(generate: gr.Button) -> gr.Button:
    """The button, placed in Generate's column (under Interrupt / Skip)."""
    with generate.parent:
        return gr.Button("Interrogate CLIP", elem_id="img2img_interrogate", size="sm")


def active_image(mode: ModeTab, values: tuple) -> Image.Image | None:
    """The image Generate would start from in this sub-tab (or, when the tab cannot say yet, e.g. an inpaint
    tab with no mask drawn, the picture in its image widget)."""
    try:
        image = mode.read(*values).get("init_image")
    except Exception:  # noqa: BLE001 - a half-filled tab still has a picture to interrogate
        image = None
    if image is None and mode.image_input in mode.inputs:
        image = image_of_value(values[mode.inputs.index(mode.image_input)])
    return image if isinstance(image, Image.Image) else None


def interrogate_prompt(interrogator: Any, image: Image.Image | None, tab_label: str = "img2img",
                       queue: JobQueue | None = None) -> Any:
    """The new prompt, gr.skip() (with a warning) when there is no image; gr.Error when it cannot run."""
    if image is None:
        gr.Warning(f"No image in the {tab_label} tab to interrogate: upload, drop or paste one first")
        return gr.skip()
    if interrogator is None:
        raise refuse("Interrogate CLIP is not set up in this app")
    ok, reason = interrogator.available()
    if not ok:
        raise refuse(reason)
    try:
        picture = image_ops.flatten_onto_white(image)
        if queue is None:
            return interrogator.interrogate(picture)
        return queue.run(INTERROGATE, interrogator.interrogate, picture)
    except InterrogatorUnavailable as exc:
        raise refuse(str(exc)) from None
    except Exception as exc:  # keep the server up and say what happened
        raise failure(f"Interrogate CLIP failed: {type(exc).__name__}: {exc}", exc) from None


def wire_interrogate(button: gr.Button, interrogator: Any, modes: list[ModeTab], mode_state: gr.State,
                     prompt: gr.Textbox, queue: JobQueue | None = None) -> None:
    def interrogate(mode_name: str, *values: Any):
        start = 0
        for mode in modes:
            if mode.name == mode_name:
                image = active_image(mode, values[start:start + len(mode.inputs)])
                return interrogate_prompt(interrogator, image, mode.label, queue)
            start += len(mode.inputs)
        raise gr.Error(f"unknown img2img mode {mode_name!r}")

    button.click(interrogate, inputs=[mode_state, *(c for m in modes for c in m.inputs)], outputs=prompt,
                 concurrency_limit=1, concurrency_id=GPU_QUEUE, show_progress="minimal").failure(
        keep_prompt, outputs=prompt, queue=False, show_progress="hidden")


def keep_prompt() -> Any:
    """After a failed Interrogate (its message is shown): the prompt is kept, and this update takes the red
    "Error" badge off the prompt box."""
    return gr.skip()
