"""Running a job from the UI: the engine works in a thread; the Gradio handler is a generator that streams its
progress (text + latent preview) and finally the gallery.

    handler --start--> worker thread: engine.img2img(request, on_progress=queue.put, control)
    handler <--queue-- ("progress", ProgressUpdate) ... ("done", GenerationResult) | ("error", exc)

The engine submits the run to its job queue (shared with the HTTP API): it waits there for its turn, then
holds the model. If the browser goes away mid-run Gradio closes the generator; the `finally` then interrupts
the job so the model is free for the next one (a job still waiting stops as soon as its turn comes).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import gradio as gr
from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.progress import JobControl, ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.models.checkpoint_loader import CheckpointError
from pipelines.models.model_manager import ModelNotFound
from ui.modes import ModeTab, unreadable_input
from ui.user_errors import failure, refuse
from ui.values import describe_error, request_from_fields

log = logging.getLogger(__name__)


@dataclass
class Progress:
    update: ProgressUpdate
    preview: Image.Image | None  # the newest preview so far (updates without one keep the last)


@dataclass
class Finished:
    result: Any  # GenerationResult
    elapsed: float


def run_in_thread(job: Callable[[Callable[[ProgressUpdate], None], JobControl], Any],
                  poll_seconds: float = 0.5) -> Iterator[Progress | Finished]:
    """Run job(on_progress, control) in a worker thread; yield Progress while it runs, then Finished.

    Progress reports that arrive faster than the consumer reads them are coalesced to the latest one.
    An exception in the job is re-raised here. Closing the iterator early interrupts the job.
    """
    events: queue.Queue = queue.Queue()
    control = JobControl()
    started = time.monotonic()

    def work() -> None:
        try:
            events.put(("done", job(lambda update: events.put(("progress", update)), control)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            events.put(("error", exc))

    worker = threading.Thread(target=work, name="img2img-job", daemon=True)
    worker.start()
    preview: Image.Image | None = None
    try:
        while True:
            try:
                kind, payload = events.get(timeout=poll_seconds)
            except queue.Empty:
                continue
            latest = None
            while kind == "progress":  # coalesce a backlog of reports
                latest = payload
                preview = payload.preview or preview
                try:
                    kind, payload = events.get_nowait()
                except queue.Empty:
                    kind = None
            if latest is not None:
                yield Progress(latest, preview)
            if kind == "done":
                yield Finished(payload, time.monotonic() - started)
                return
            if kind == "error":
                raise payload
    finally:
        if worker.is_alive():
            log.info("the client left during a run: interrupting it")
            control.interrupt()


def enlarge_preview(preview: Image.Image, width: int, height: int, limit: int = 512) -> Image.Image:
    """The 1/8-size latent preview scaled up to the output's aspect ratio (at most `limit` px a side)."""
    factor = min(1.0, limit / max(width, height))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return preview.resize(size, Image.Resampling.BILINEAR)


def request_for(mode: ModeTab, mode_values: tuple, field_values: dict[str, Any],
                resize_tab: str) -> Img2ImgRequest:
    """The validated request for the active sub-tab; gr.Error (a readable message) when a value is wrong.
    Only this tab's inputs are read: an unreadable file on another sub-tab does not matter here."""
    if (message := unreadable_input(mode, mode_values)) is not None:
        raise refuse(message[0].upper() + message[1:])
    try:
        mode_fields = dict(mode.read(*mode_values))
        image = mode_fields.pop("init_image", None)
        request = request_from_fields(field_values, image, resize_tab, image_label=mode.label)
        return request.replace(**mode_fields) if mode_fields else request
    except RequestError as exc:
        raise refuse(describe_error(exc)) from None


def user_error(exc: BaseException) -> gr.Error:
    """Any exception from a run as a gr.Error the user can act on (the server keeps running)."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, RequestError):
        return refuse(describe_error(exc))
    if isinstance(exc, (ModelNotFound, CheckpointError)):
        return refuse(f"Stable Diffusion checkpoint: {exc}")
    return failure(f"Generation failed: {type(exc).__name__}: {exc}", exc)
