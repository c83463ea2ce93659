"""/docs (Swagger UI) and /openapi.json for the /sdapi/v1 routes, behind the same auth as the API.

Served on the API's own app (--nowebui) and on Gradio's (--api), where FastAPI's defaults are off or would
describe Gradio's internal routes without asking for credentials; any earlier route at these paths is
replaced.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"


def remove_routes(app: FastAPI, paths: set[str]) -> None:
    """Drop the app's routes at `paths` (FastAPI's or Gradio's defaults), so ours answer there."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in paths]


def install_docs(app: FastAPI, prefix: str, dependencies: list[Any], title: str = "img2img studio API",
                 version: str = "1") -> None:
    """GET /openapi.json: the spec of the routes under `prefix`; GET /docs: Swagger UI over it."""
    remove_routes(app, {DOCS_PATH, OPENAPI_PATH, DOCS_PATH + "/oauth2-redirect", "/redoc"})
    spec: dict[str, Any] = {}

    def openapi() -> JSONResponse:
        if not spec:  # the routes are all in place by the first request
            routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith(prefix)]
            spec.update(get_openapi(title=title, version=version, routes=routes,
                                    description="AUTOMATIC1111-compatible /sdapi/v1 (img2img)"))
        return JSONResponse(spec)

    def docs() -> Any:
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{title} - Swagger UI")

    app.add_api_route(OPENAPI_PATH, openapi, methods=["GET"], dependencies=dependencies, include_in_schema=False)
    app.add_api_route(DOCS_PATH, docs, methods=["GET"], dependencies=dependencies, include_in_schema=False)
