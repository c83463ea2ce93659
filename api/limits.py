"""The API's bounds on one request (pipelines/limits.py declares them; launch flags set them).

- `body_limited_route(max_bytes)`: a route class that answers 413 before reading more than max_bytes of a
  request body (Content-Length checked first; a chunked body is counted as it streams in). Per route, so it
  works on an app that is already serving (Gradio's, with --api), where middleware can no longer be added.
- `check_before_decoding(body, limits)`: counts and prompt text, before any image is decoded; returns the
  request's pixel budget that decode_image admits each image's declared size against.
- `check_before_queueing(...)`: the output size, the prompts' token counts and the script's arguments,
  before the job waits in the queue.
- `cancel_when_disconnected(request, work, control, queue)`: runs the job; if the HTTP client goes away,
  the job is interrupted by its id (a job still queued is dropped when its turn comes). A1111 keeps going.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from pipelines.fields import MAX_BATCH_SIZE, MAX_PROMPT_CHUNKS, MAX_PROMPT_TOKENS, PROMPT_CHUNK_TOKENS, RequestError
from pipelines.generation.progress import JobControl
from pipelines.generation.prompt_chunks import token_count
from pipelines.generation.queue import JobNotRunning, JobQueue
from pipelines.generation.requests import check_prompt
from pipelines.limits import MIB, ImageBudget, Limits

log = logging.getLogger("api")
T = TypeVar("T")
DISCONNECT_POLL_SECONDS = 0.25


# Request body -----------------------------------------------------------------------------------------
def body_limited_route(max_bytes: int) -> type[APIRoute]:
    """An APIRoute class whose requests may carry at most max_bytes of body (413 otherwise)."""

    def too_large() -> JSONResponse:
        return JSONResponse(status_code=413, content={
            "detail": f"request body is larger than the {max_bytes / MIB:g} MB limit (--api-max-body-mb)"})

    class BodyLimitedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Any]]:
            handler = super().get_route_handler()

            async def limited(request: Request) -> Any:
                length = request.headers.get("content-length", "")
                if length.isdigit() and int(length) > max_bytes:
                    return too_large()
                if request.method in ("POST", "PUT", "PATCH"):
                    body = bytearray()
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > max_bytes:
                            return too_large()
                    request._body = bytes(body)  # what request.body() returns to FastAPI's handler
                return await handler(request)

            return limited

    return BodyLimitedRoute


# Before decoding ------------------------------------------------------------------------------------------
def check_before_decoding(body: Any, limits: Limits) -> ImageBudget:
    """Cheap checks first: the image count (A1111: at most batch_size images, batch_size at most
    MAX_BATCH_SIZE) and the prompts' text. Returns the budget each image's declared size is admitted by."""
    count, batch_size = len(body.init_images or []), body.batch_size or 1
    if count > 1 and (count > batch_size or count > MAX_BATCH_SIZE):
        raise RequestError("init_images", f"{count} images but batch_size is {batch_size}; send at most "
                                          f"batch_size images (at most {MAX_BATCH_SIZE})")
    for name in ("prompt", "negative_prompt"):
        if getattr(body, name) is not None:
            check_prompt(name, getattr(body, name))
    return ImageBudget(limits)


# Before queueing -------------------------------------------------------------------------------------------
def check_before_queueing(request: Any, body: Any, script: str | None, models: Any, catalog: Any,
                          limits: Limits) -> None:
    """What would otherwise fail only once the job's turn came: the output's size, the prompts' token counts
    (with the loaded model's tokenizer), the script's arguments."""
    limits.check_request(request)
    tokenizer = getattr(getattr(getattr(models, "current", None), "components", None), "tokenizer", None)
    if tokenizer is not None:
        for name in ("prompt", "negative_prompt"):
            # The engine's own count (prompt language parsed); the engine refuses more than MAX_PROMPT_CHUNKS.
            tokens, _ = token_count(tokenizer, getattr(request, name), request.steps, request.emphasis)
            if tokens > MAX_PROMPT_TOKENS:
                raise RequestError(name, f"{tokens} tokens is more than the limit of {MAX_PROMPT_TOKENS} "
                                         f"({MAX_PROMPT_CHUNKS} chunks of {PROMPT_CHUNK_TOKENS})")
    if script is not None:
        catalog.check(script, request, list(body.script_args or []))


# While running ------------------------------------------------------------------------------------------
async def cancel_when_disconnected(request: Request, work: Callable[[], Awaitable[T]], control: JobControl,
                                   queue: JobQueue, poll: float = DISCONNECT_POLL_SECONDS) -> T:
    """await work() (a job submitted with `control`); interrupt the job if the client disconnects first."""

    async def watch() -> None:
        while True:
            await anyio.sleep(poll)
            if await request.is_disconnected():
                _interrupt(control, queue)
                return

    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            outcome["value"] = await work()
        except Exception as exc:  # noqa: BLE001 - raised below, outside the group (which would wrap it)
            outcome["error"] = exc
        finally:
            group.cancel_scope.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _interrupt(control: JobControl, queue: JobQueue) -> None:
    running = queue.running
    if running is not None and running.control is control:
        try:
            queue.interrupt(running.id)
            log.info("the HTTP client left: job %s interrupted", running.id)
            return
        except JobNotRunning:  # it ended meanwhile
            pass
    control.interrupt()  # still queued: run_job drops it when its turn comes
    log.info("the HTTP client left: its queued job is dropped")
