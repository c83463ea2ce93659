"""Start the studio: launch flags -> Settings -> device policy -> ModelManager -> Engine -> UI -> launch.

    python app.py [--listen] [--port 7860] [--data-dir DIR] [--gradio-auth user:pass] ...

This is the only module that wires things together. Gradio and diffusers are imported only after the
environment is set up (offline, no telemetry), so nothing here phones home.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from pipelines.launch_flags import (
    Settings,
    api_credentials,
    create_model_folders,
    parse_credentials,
    parse_flags,
    ui_credentials,
)

log = logging.getLogger("app")

OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def configure_environment() -> None:
    """Offline and telemetry-free; must run before gradio, huggingface_hub or diffusers are imported."""
    os.environ.update(OFFLINE_ENVIRONMENT)


def parse_auth(text: str | None) -> list[tuple[str, str]] | None:
    """--gradio-auth "user:pass,user2:pass2" -> [("user", "pass"), ...] (None when unset)."""
    return parse_credentials(text, "--gradio-auth")


@dataclass
class AppParts:
    blocks: Any  # gr.Blocks, or None when serving the API alone (--nowebui)
    engine: Any  # pipelines.generation.engine.Engine
    models: Any  # pipelines.models.model_manager.ModelManager
    settings: Settings
    interrogator: Any = None  # the ModelManager's Interrogator (loads its models on first use)


def create_core(settings: Settings) -> AppParts:
    """Device policy -> models -> engine -> interrogator: everything both front ends share."""
    configure_environment()
    create_model_folders(settings)  # so users see where models go
    from pipelines.device_policy import DevicePolicy
    from pipelines.generation.engine import Engine
    from pipelines.models.model_manager import ModelManager

    policy = DevicePolicy.from_settings(settings)
    log.info("Device policy: %s", policy.describe())
    models = ModelManager(settings, policy)
    models.load(None)
    log.info("Model: %s", models.status_line())
    engine = Engine(models, settings.outputs_dir)
    from pipelines.io.outputs import sweep_leftovers

    sweep_leftovers(settings.outputs_dir)  # temp files of saves a kill -9 or a full disk interrupted
    # the interrogation and upscaler models belong to the ModelManager (placed by its policy, freed on a
    # checkpoint switch); the front ends reach them through it
    return AppParts(None, engine, models, settings, models.interrogator)


def create_app(settings: Settings) -> AppParts:
    """Build everything short of serving it: tests call this in-process."""
    from ui.build import build_ui

    parts = create_core(settings)
    parts.blocks = build_ui(parts.engine, parts.models, settings, interrogator=parts.interrogator)
    # One generation at a time (the engine's job queue also orders them with API jobs); Interrupt/Skip
    # bypass it.
    parts.blocks.queue(default_concurrency_limit=1)
    return parts


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    from ui.build import launch_options

    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    return {
        "server_name": settings.server_name,
        "server_port": settings.server_port,
        "auth": ui_credentials(settings),  # --gradio-auth, else --api-auth: see server_auth.py
        "max_file_size": int(settings.max_upload_mb * 1024 * 1024),
        "share": settings.share,
        "allowed_paths": [str(settings.outputs_dir)],  # the gallery serves the saved files (infotext kept)
        "show_error": True,  # unexpected exceptions reach the user as a message, not a bare "Error"
        "footer_links": ["gradio", "settings"],
        **launch_options(),
    }


def api_extras(parts: AppParts) -> dict[str, Any]:
    """What the /sdapi/v1 routes need beyond the engine: scripts, the interrogator, the upscaler list."""
    from api.scripts import RegistryScripts
    from pipelines.models.upscalers import list_upscalers

    models_dir = parts.settings.models_dir
    return {"scripts": RegistryScripts(parts.engine, models_dir, parts.interrogator, parts.models.upscalers),
            "interrogator": parts.interrogator, "upscalers": lambda: list_upscalers(models_dir)}


def install_api(fastapi_app: Any, parts: AppParts, guard: Any = None) -> None:
    """--api: the /sdapi/v1 routes on Gradio's own FastAPI app, after launch, as A1111 does."""
    from api import create_api

    create_api(fastapi_app, settings=parts.settings, models=parts.models, engine=parts.engine, guard=guard,
               **api_extras(parts))
    log.info("HTTP API at /sdapi/v1 (docs at /docs)")


def serve_api_only(settings: Settings) -> None:
    """--nowebui: the API alone on its own port (7861 by default)."""
    from api import build_api_app, serve

    parts = create_core(settings)
    serve(build_api_app(settings, parts.models, parts.engine, **api_extras(parts)), settings)


def start(settings: Settings) -> tuple[AppParts, Any, str, str | None]:
    """Build, launch without blocking and secure the UI (+ the API with --api): what main() serves.
    Returns (parts, Gradio's FastAPI app, local URL, share URL)."""
    from api.cors import install_cors
    from server_auth import protect_gradio_app

    parts = create_app(settings)
    fastapi_app, local_url, share_url = parts.blocks.launch(prevent_thread_lock=True, **launch_kwargs(settings))
    # Gradio's CORS middleware answers foreign origins (see api/cors.py): the launch flags' policy replaces it
    install_cors(fastapi_app, settings, replace="CustomCORSMiddleware")
    # --api-server-stop: close from another thread (not the server's own); main()'s block_thread then returns
    fastapi_app.state.stop_server = lambda: threading.Thread(target=parts.blocks.close, daemon=True).start()
    guard = protect_gradio_app(fastapi_app, settings)
    if settings.api:
        install_api(fastapi_app, parts, guard)
    return parts, fastapi_app, local_url, share_url


def main(argv: list[str] | None = None) -> None:
    from startup_checks import listen_warning, port_problem

    settings = parse_flags(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_environment()
    try:  # a typo in a credentials flag stops here, before models load
        for credentials_of in (ui_credentials, api_credentials):
            credentials_of(settings)
    except ValueError as exc:
        sys.exit(str(exc))
    if warning := listen_warning(settings):
        log.warning(warning)
    if problem := port_problem(settings):
        sys.exit(problem)
    if settings.nowebui:
        serve_api_only(settings)
        return
    parts, _, local_url, share_url = start(settings)
    log.info("Serving on %s%s", local_url, f" and {share_url}" if share_url else "")
    parts.blocks.block_thread()


if __name__ == "__main__":
    main()
