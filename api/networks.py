"""/sdapi/v1 lists of LoRA files, embeddings and saved styles, in A1111's shapes, and their refresh calls.

    GET  /loras               [{"name", "alias", "path", "metadata"}]          (A1111's Lora extension)
    POST /refresh-loras
    GET  /embeddings          {"loaded": {name: {"step", "sd_checkpoint", "sd_checkpoint_name", "shape",
                               "vectors"}}, "skipped": {...}}                   (skipped: another model's width)
    POST /refresh-embeddings
    GET  /prompt-styles       [{"name", "prompt", "negative_prompt"}]
"""

from collections.abc import Callable
from typing import Any

from pipelines.io.styles import StyleDatabase
from pipelines.models.embeddings import is_sdxl, model_width


def loras(models: Any) -> list[dict[str, Any]]:
    return [{"name": f.name, "alias": f.alias, "path": str(f.path), "metadata": dict(f.metadata)}
            for f in models.loras.files]


def embeddings(models: Any) -> dict[str, dict[str, Any]]:
    components = models.current.components
    loaded, skipped = models.embeddings.listing(model_width(components), is_sdxl(components))  # SDXL: 1280

    def item(e: Any) -> dict[str, Any]:
        return {"step": e.step, "sd_checkpoint": e.sd_checkpoint, "sd_checkpoint_name": e.sd_checkpoint_name,
                "shape": e.shape, "vectors": e.count}

    return {"loaded": {e.name: item(e) for e in loaded}, "skipped": {e.name: item(e) for e in skipped}}


def prompt_styles(styles: StyleDatabase) -> list[dict[str, str]]:
    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in styles.styles.values()]


def add_routes(route: Callable[..., None], models: Any, styles: StyleDatabase) -> None:
    """Mount the five routes through create_api's `route(path, endpoint, method, response_model)`."""

    def get_loras() -> Any:
        return loras(models)

    def refresh_loras() -> Any:
        models.loras.refresh()
        return None

    def get_embeddings() -> Any:
        return embeddings(models)

    def refresh_embeddings() -> Any:
        models.embeddings.refresh()
        return None

    def get_prompt_styles() -> Any:
        return prompt_styles(styles)

    route("/loras", get_loras, "GET", list[dict[str, Any]])
    route("/refresh-loras", refresh_loras, "POST")
    route("/embeddings", get_embeddings, "GET", dict[str, Any])
    route("/refresh-embeddings", refresh_embeddings, "POST")
    route("/prompt-styles", get_prompt_styles, "GET", list[dict[str, Any]])
