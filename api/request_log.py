"""One log line for every failed API request: "API 422 POST /sdapi/v1/img2img: steps: ... is not ...".

`logged_route(base)` wraps a route class (per route, so it works on Gradio's app that is already serving).
It sees everything the route answers with, FastAPI's own body validation included (auth refusals are
logged by api/auth.py): a 4xx is one warning line with the method, the path and the reason; a 5xx is one
error line the same way (the error wrapper, api/errors.py, logs its stack trace: a 5xx is a bug).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

log = logging.getLogger("api")
MAX_REASON_CHARS = 500
# Refusals by the auth layer (api/auth.py): it logs a wrong password itself, with the user and client, and a
# request without credentials (401) is the normal start of HTTP Basic, not worth a line; a 429 lock-out is
# logged once when it starts. Logging them here too would make each one two lines, or a flood.
AUTH_STATUSES = (401, 429)


def reason_text(detail: Any) -> str:
    """A readable one-line reason from an error body's "detail" (a string, or FastAPI's list of errors)."""
    if isinstance(detail, list):  # FastAPI's validation errors: "body.steps: Input should be ..."
        parts = []
        for error in detail:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("loc", ()))
                parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
            else:
                parts.append(str(error))
        detail = "; ".join(parts)
    return " ".join(str(detail).split())[:MAX_REASON_CHARS]


def log_failure(request: Request, status: int, detail: Any) -> None:
    level = logging.ERROR if status >= 500 else logging.WARNING
    log.log(level, "API %d %s %s: %s", status, request.method, request.url.path, reason_text(detail))


def _response_detail(response: Response) -> Any:
    try:
        body = json.loads(bytes(response.body or b""))
    except (ValueError, TypeError, AttributeError):
        return bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace")
    return body.get("detail", body) if isinstance(body, dict) else body


def logged_route(base: type[APIRoute]) -> type[APIRoute]:
    """`base` (an APIRoute class) whose failed answers are logged, one line each."""

    class LoggedRoute(base):  # type: ignore[misc, valid-type]
        def get_route_handler(self) -> Callable[[Request], Awaitable[Any]]:
            handler = super().get_route_handler()

            async def logged(request: Request) -> Any:
                try:
                    response = await handler(request)
                except RequestValidationError as exc:
                    log_failure(request, 422, exc.errors())
                    raise
                except HTTPException as exc:
                    if exc.status_code not in AUTH_STATUSES:
                        log_failure(request, exc.status_code, exc.detail)
                    raise
                if isinstance(response, Response) and response.status_code >= 400:
                    log_failure(request, response.status_code, _response_detail(response))
                return response

            return logged

    return LoggedRoute
