"""The read-only lists of /sdapi/v1 in A1111's shapes: samplers, schedulers, upscalers, sd-models, sd-vae,
cmd-flags. Pure functions over what the engine side knows; routes.py only calls them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipelines.generation.samplers import SAMPLERS, SCHEDULE_TYPES

BUILTIN_UPSCALERS = [  # A1111's non-model upscalers (its UpscalerData default scale is 4)
    {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
    {"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
    {"name": "Nearest", "model_name": None, "model_path": None, "model_url": None, "scale": 4},
]
# A1111's sd_schedulers entries for the schedule types we support: label -> (name, default_rho, inner).
SCHEDULER_META = {
    "Automatic": ("automatic", None, False),
    "Uniform": ("uniform", None, True),
    "Karras": ("karras", 7.0, False),
    "Exponential": ("exponential", None, False),
    "Polyexponential": ("polyexponential", 1.0, False),
    "SGM Uniform": ("sgm_uniform", None, True),
    "KL Optimal": ("kl_optimal", None, False),
    "Align Your Steps": ("align_your_steps", None, False),
    "Simple": ("simple", None, True),
    "Normal": ("normal", None, True),
    "DDIM": ("ddim", None, True),
    "Beta": ("beta", None, True),
}
SECRET_FLAGS = {"api_auth", "gradio_auth"}  # A1111 returns these in cmd-flags; we do not hand out passwords


def samplers() -> list[dict[str, Any]]:
    items = []
    for spec in SAMPLERS:
        options: dict[str, Any] = {}
        if spec.default_schedule != "Uniform":
            options["scheduler"] = spec.default_schedule.lower()  # what "Automatic" means for it
        if spec.name.endswith(" a") or "SDE" in spec.name:
            options["uses_ensd"] = True  # draws fresh noise every step, as A1111 marks it
        options["diffusers_scheduler"] = spec.scheduler_class
        items.append({"name": spec.name, "aliases": list(spec.aliases), "options": options})
    return items


def schedulers() -> list[dict[str, Any]]:
    ordered = [t for t in SCHEDULER_META if t in SCHEDULE_TYPES]
    ordered += [t for t in SCHEDULE_TYPES if t not in SCHEDULER_META]
    items = []
    for label in ordered:
        name, rho, inner = SCHEDULER_META.get(label, (label.lower(), None, False))
        items.append(
            {"name": name, "label": label, "aliases": None, "default_rho": rho, "need_inner_model": inner}
        )
    return items


def upscalers(provider: Callable[[], Iterable[Any]] | None) -> list[dict[str, Any]]:
    """None, Lanczos, Nearest, then whatever the provider lists (dicts, objects or names), first name wins."""
    items = [dict(u) for u in BUILTIN_UPSCALERS]
    names = {u["name"] for u in items}
    for entry in (provider() or []) if provider is not None else []:
        item = _upscaler_item(entry)
        if item["name"] not in names:
            items.append(item)
            names.add(item["name"])
    return items


def _upscaler_item(entry: Any) -> dict[str, Any]:
    keys = ("name", "model_name", "model_path", "model_url", "scale")
    if isinstance(entry, str):
        return {"name": entry, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
    if isinstance(entry, dict):
        item = {k: entry.get(k) for k in keys}
    else:
        item = {k: getattr(entry, k, None) for k in keys}
        path = getattr(entry, "path", None)  # pipelines.models.upscalers.UpscalerInfo(name, path, scale)
        if item["model_path"] is None and path is not None:
            item["model_path"] = path
            item["model_name"] = item["model_name"] or Path(path).stem
    for k in ("model_name", "model_path", "model_url"):
        if item[k] is not None:
            item[k] = str(item[k])
    return item


def sd_models(models: Any) -> list[dict[str, Any]]:
    if not models.checkpoints:  # only the embedded demo model
        title = models.checkpoint_titles()[0]
        return [
            {
                "title": title,
                "model_name": title,
                "hash": None,
                "sha256": None,
                "filename": "",
                "config": None,
                "family": "sd1",
            }
        ]
    return [
        {"title": c.title, "model_name": c.name, "hash": c.short_hash, "sha256": full_hash(models, c),
         "filename": str(c.path), "config": None, "family": _family(models, c)}
        for c in models.checkpoints
    ]  # fmt: skip


def _family(models: Any, info: Any) -> str | None:
    """This app's addition to A1111's fields: "sd1", "sd2" or "sdxl" (None: not known until loaded)."""
    family = models.family_of(info) if hasattr(models, "family_of") else None
    return family.value if family is not None else None


def full_hash(models: Any, info: Any) -> str | None:
    """The full SHA-256 when the short hash is known (so it is cached); never hashes a big file here."""
    if info.path is None or not info.short_hash or not Path(info.path).is_file():
        return None
    try:
        return models.hashes.sha256(info.path)
    except (OSError, AttributeError):
        return None


def sd_vae(models: Any) -> list[dict[str, Any]]:
    return [{"model_name": p.name, "filename": str(p)} for p in models.vae_files]


def cmd_flags(settings: Any) -> dict[str, Any]:
    """The launch flags by argparse dest name, like A1111's; credentials are masked."""
    flags = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_FLAGS and value:
            value = "<hidden>"
        flags[f.name] = str(value) if isinstance(value, Path) else value
    return flags
