"""The A1111-compatible HTTP API (/sdapi/v1): another front end over the same engine as the web UI.

    create_api(app, settings=..., models=..., engine=..., scripts=None, interrogator=None,
               upscalers=None, auth=None)      mount on an existing FastAPI app (--api, beside Gradio)
    build_api_app(settings, models, engine, ...) -> FastAPI     the API alone (--nowebui, tests)
    serve(app, settings)                        run it with uvicorn on --listen/--port (blocks)

Layout: models.py (pydantic schemas), codec.py (base64 images), auth.py (--api-auth), errors.py (JSON
errors), state.py (progress tracking, options), scripts.py (script_name lookup), img2img.py (request
mapping, running, the info JSON), routes.py (the endpoints), probes.py (the lists and controls clients
probe: memory, script-info, unload/reload, server-stop), cors.py (--cors-allow-origins), request_log.py
(one log line per failed request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from api.routes import SdApi, create_api

__all__ = ["SdApi", "build_api_app", "create_api", "serve"]


def build_api_app(
    settings: Any,
    models: Any,
    engine: Any,
    *,
    scripts: Any = None,
    interrogator: Any = None,
    upscalers: Callable[[], Iterable[Any]] | None = None,
    auth: list[tuple[str, str]] | None = None,
    guard: Callable[..., None] | None = None,
) -> Any:
    """A FastAPI app serving only /sdapi/v1 (plus /docs and /openapi.json, behind the same auth)."""
    from fastapi import FastAPI

    app = FastAPI(title="img2img studio API", description="AUTOMATIC1111-compatible /sdapi/v1 (img2img)",
                  docs_url=None, redoc_url=None, openapi_url=None)  # create_api serves them behind its auth
    create_api(
        app,
        settings=settings,
        models=models,
        engine=engine,
        scripts=scripts,
        interrogator=interrogator,
        upscalers=upscalers,
        auth=auth,
        guard=guard,
    )
    from api.cors import install_cors

    install_cors(app, settings)  # --cors-allow-origins(-regex), in place before the server starts
    return app


def serve(app: Any, settings: Any) -> None:
    """Serve `app` with uvicorn on settings.server_name:server_port (7861 with --nowebui); blocks until
    stopped (Ctrl+C, or POST /sdapi/v1/server-stop with --api-server-stop: app.state.stop_server)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=settings.server_name, port=settings.server_port,
                                           log_level="info"))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)  # graceful: running requests finish
    server.run()
