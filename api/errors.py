"""Errors the API answers with, and the wrapper that turns them (and anything unexpected) into JSON.

Every error body is {"detail": <message>} like FastAPI's and A1111's; errors about one request field also
carry "field". User errors are logged, one line each, by the route class (api/request_log.py); only an
unexpected exception logs its stack trace here. The wrapper is per endpoint (not an app exception handler),
so it works on an app that is already serving, such as Gradio's, where handlers added late would be ignored.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from pipelines.fields import RequestError
from pipelines.models.checkpoint_loader import CheckpointError
from pipelines.models.model_manager import ModelNotFound

log = logging.getLogger("api")


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


def field_error(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, f"{field}: {message}", field)


def error_response(exc: BaseException) -> JSONResponse:
    if isinstance(exc, ApiError):
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(status_code=exc.status, content=body)
    if isinstance(exc, RequestError):
        return JSONResponse(status_code=422, content={"detail": str(exc), "field": exc.field})
    if isinstance(exc, (ModelNotFound, CheckpointError)):  # an unknown or unreadable model file
        status = 404 if isinstance(exc, ModelNotFound) else 422
        return JSONResponse(status_code=status, content={"detail": str(exc)})
    log.error("API error: %s: %s", type(exc).__name__, exc, exc_info=exc)  # a bug: its stack trace
    return JSONResponse(
        status_code=500, content={"detail": f"{type(exc).__name__}: {exc}", "error": type(exc).__name__}
    )


def json_errors(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an endpoint (sync or async) so ApiError, RequestError and unexpected exceptions become JSON
    answers instead of tracebacks; HTTPException passes through to FastAPI's own handler."""
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await endpoint(*args, **kwargs)
            except HTTPException:
                raise
            except Exception as exc:  # noqa: BLE001 - the server answers, it never dies
                return error_response(exc)

        return wrapped_async

    @functools.wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001
            return error_response(exc)

    return wrapped
