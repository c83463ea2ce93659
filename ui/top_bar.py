"""The bar above the tabs: checkpoint and VAE dropdowns with refresh buttons, and the model status line.

A switch is a job in the engine's job queue, like a generation: it waits for the running job (the web UI's
or the API's), so new weights never load beside the ones a job is using and its infotext names its model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from pipelines.generation.queue import SWITCH, JobQueue
from pipelines.models.checkpoint_loader import CheckpointError
from pipelines.models.components import DEMO_MODEL_NAME
from pipelines.models.model_manager import ModelManager, ModelNotFound, NoModelLoaded
from ui.params import tool_button
from ui.user_errors import refuse

log = logging.getLogger(__name__)

# Gradio concurrency_id shared by every event that runs or swaps the model: one at a time among this UI's
# events (the job queue then orders them with the API's jobs).
GPU_QUEUE = "gpu"


@dataclass
class TopBar:
    checkpoint: gr.Dropdown
    vae: gr.Dropdown
    status: gr.Markdown


# How the demo model is listed: always there (to fall back on), and clearly not a real model.
DEMO_LABEL = f"{DEMO_MODEL_NAME} (embedded untrained demo: noise-like images)"


def status_markdown(models: ModelManager) -> str:
    try:
        line = models.status_line()
    except NoModelLoaded as exc:
        return f"⚠️ **No model is loaded: {exc}**"
    return f"⚠️ **{line}**" if models.is_demo or getattr(models, "skipped", None) else line


def checkpoint_choices(models: ModelManager) -> list[tuple[str, str]]:
    """(label, title) of every checkpoint, the demo model last under DEMO_LABEL."""
    return [(DEMO_LABEL if title == DEMO_MODEL_NAME else title, title) for title in models.checkpoint_titles()]


def loaded_title(models: ModelManager) -> str | None:
    try:
        return models.current.info.title
    except NoModelLoaded:
        return None


def build_top_bar(models: ModelManager, queue: JobQueue) -> TopBar:
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(checkpoint_choices(models), value=loaded_title(models),
                                 label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                                 scale=3)
        refresh_ckpt = tool_button("🔄", "refresh_sd_model_checkpoint", "Refresh the checkpoint list")
        vae = gr.Dropdown(models.vae_choices(), value=models.vae_choice, label="SD VAE",
                          elem_id="setting_sd_vae", scale=2)
        refresh_vae = tool_button("🔄", "refresh_sd_vae", "Refresh the VAE list")
    status = gr.Markdown(status_markdown(models), elem_id="model_status")

    def load_checkpoint(title: str):
        try:
            queue.run(SWITCH, models.load, title)
        except (ModelNotFound, CheckpointError) as exc:
            raise refuse(f"Stable Diffusion checkpoint: {exc}") from None
        log.info("UI: switched to %s", title)

    def set_vae(choice: str):
        try:
            queue.run(SWITCH, models.set_vae, choice)
        except (ModelNotFound, CheckpointError) as exc:
            raise refuse(f"SD VAE: {exc}") from None

    def sync():  # what the widgets show = what is loaded (also after a failed load)
        return (gr.Dropdown(choices=checkpoint_choices(models), value=loaded_title(models)),
                gr.Dropdown(choices=models.vae_choices(), value=models.vae_choice), status_markdown(models))

    def refresh():
        models.refresh()
        return sync()

    outputs = [checkpoint, vae, status]
    # .input (user changes only), so that sync() setting the value does not load again.
    checkpoint.input(load_checkpoint, inputs=checkpoint, concurrency_limit=1, concurrency_id=GPU_QUEUE,
                     show_progress="full").then(sync, outputs=outputs, queue=False)
    vae.input(set_vae, inputs=vae, concurrency_limit=1, concurrency_id=GPU_QUEUE).then(sync, outputs=outputs,
                                                                                      queue=False)
    # Refresh may hash new files (seconds for a big checkpoint): queued, but not behind a running job.
    refresh_ckpt.click(refresh, outputs=outputs, concurrency_limit=None)
    refresh_vae.click(refresh, outputs=outputs, concurrency_limit=None)
    # Each page load shows the current lists and model, not those of the moment the page was built.
    gr.on(None, sync, outputs=outputs, queue=False)
    return TopBar(checkpoint, vae, status)
