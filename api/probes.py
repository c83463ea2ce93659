"""The /sdapi/v1 routes A1111 clients probe at connect time, in A1111's shapes (modules/api/api.py, models.py).

    GET  /latent-upscale-modes   [{"name"}]                      the Hires. fix latent modes
    GET  /memory                 {"ram": {free, used, total}, "cuda": {system, active, allocated, reserved,
                                  inactive, events} | {"error": "unavailable"}}
    POST /unload-checkpoint      {}   free the checkpoint's weights (it loads again on its next use)
    POST /reload-checkpoint      {}   load it again now
    GET  /script-info            [ScriptInfo]  every img2img script and always-on script with its args
    GET  /extensions, /face-restorers, /realesrgan-models, /hypernetworks   [] (this project has none)
    POST /server-stop, /server-restart, /server-kill   only with --api-server-stop (404 otherwise, as A1111)

No `from __future__ import annotations`: FastAPI reads the endpoints' annotations through the error wrapper.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from fastapi import Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.alwayson import SOFT_INPAINTING, SOFT_INPAINTING_ARGS
from api.errors import ApiError
from pipelines.generation.queue import SWITCH
from pipelines.launch_flags import PROJECT_ROOT

log = logging.getLogger("api")



# A1111's schemas (modules/api/models.py), under A1111's names so /openapi.json reads the same.
class LatentUpscalerModeItem(BaseModel):
    name: str = Field(title="Name")


class MemoryResponse(BaseModel):
    ram: dict = Field(title="RAM", description="System memory stats")
    cuda: dict = Field(title="CUDA", description="nVidia CUDA memory stats")


class ScriptArg(BaseModel):
    label: Optional[str] = Field(default=None, title="Label")
    value: Optional[Any] = Field(default=None, title="Value")
    minimum: Optional[Any] = Field(default=None, title="Minimum")
    maximum: Optional[Any] = Field(default=None, title="Maximum")
    step: Optional[Any] = Field(default=None, title="Step")
    choices: Optional[list[str]] = Field(default=None, title="Choices")


class ScriptInfo(BaseModel):
    name: Optional[str] = Field(default=None, title="Name")
    is_alwayson: Optional[bool] = Field(default=None, title="IsAlwayson")
    is_img2img: Optional[bool] = Field(default=None, title="IsImg2img")
    args: list[ScriptArg] = Field(title="Arguments")


class ExtensionItem(BaseModel):
    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: str
    enabled: bool


class HypernetworkItem(BaseModel):
    name: str
    path: Optional[str] = None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: Optional[str] = None


class RealesrganItem(BaseModel):
    name: str
    path: Optional[str] = None
    scale: Optional[int] = None


# 1. Memory ------------------------------------------------------------------------------------------------
def ram_figures() -> dict[str, Any]:
    """A1111's ram figures: this process's resident memory as `used`, the machine's total, free = the rest.
    Read from /proc (no psutil dependency); {"error": ...} where there is no /proc, as A1111 reports."""
    try:
        rss_kb = _proc_kb("/proc/self/status", "VmRSS")
        total_kb = _proc_kb("/proc/meminfo", "MemTotal")
    except (OSError, ValueError) as exc:
        return {"error": f"{exc}"}
    used, total = rss_kb * 1024, total_kb * 1024
    return {"free": float(total - used), "used": used, "total": float(total)}


def _proc_kb(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise ValueError(f"{key} not found in {path}")


def cuda_figures(device: Any = None) -> dict[str, Any]:
    """A1111's cuda figures from torch's allocator, or {"error": "unavailable"} without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return {"error": "unavailable"}
        if device is None or getattr(device, "type", "cuda") != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        free, total = torch.cuda.mem_get_info(device)
        s = dict(torch.cuda.memory_stats(device))

        def pair(name: str) -> dict[str, int]:
            return {"current": s.get(f"{name}.all.current", 0), "peak": s.get(f"{name}.all.peak", 0)}

        return {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": s.get("num_alloc_retries", 0), "oom": s.get("num_ooms", 0)}}
    except Exception as exc:  # noqa: BLE001 - a driver problem is reported in the figures, as A1111 does
        return {"error": f"{exc}"}


# 2. Script info -------------------------------------------------------------------------------------------
INFO = "<info>"  # A1111's gr.HTML note at the head of some scripts' args (script_args[0], ignored)
# Each script's script_args positions as A1111's ui() returns them: the params fields, by name.
SCRIPT_ARG_ORDER = {
    "Loopback": ("loops", "final_denoising_strength", "denoising_curve", "append_interrogation"),
    "Outpainting mk2": (INFO, "pixels", "mask_blur", "directions", "noise_q", "color_variation"),
    "Poor man's outpainting": ("pixels", "mask_blur", "masked_content", "directions"),
    "SD upscale": (INFO, "overlap", "upscaler", "scale"),
}
SOFT_INPAINTING_STEPS = (0.1, 0.05, 0.5, 0.05, 0.25, 0.25)  # A1111's sliders, in SOFT_INPAINTING_ARGS order


def script_info(models_dir: Path | None) -> list[dict[str, Any]]:
    """A1111's ScriptInfo for every img2img script (lower-case name, its args in script_args order with the
    UI control's label, default, range and choices) and the always-on Soft Inpainting."""
    from scripts.script_values import SCRIPT_SPECS  # the scripts' controls, declared once (no gradio there)
    from scripts.sd_upscale import upscaler_choices

    infos = []
    for title, spec in SCRIPT_SPECS.items():
        args = []
        for name in SCRIPT_ARG_ORDER[title]:
            if name == INFO:
                args.append({"label": "", "value": spec.hint})
                continue
            control = spec.control(name)
            arg: dict[str, Any] = {"label": control.label, "value": spec.default(name)}
            if control.kind == "slider":
                cast = int if control.whole else float
                arg.update(minimum=cast(control.minimum), maximum=cast(control.maximum), step=cast(control.step))
            elif control.kind == "upscaler":
                arg["choices"] = upscaler_choices(models_dir)
            elif control.choices:
                arg["choices"] = list(control.choices)
            args.append(arg)
        infos.append({"name": title.lower(), "is_alwayson": False, "is_img2img": True, "args": args})
    soft = [{"label": "Soft inpainting", "value": False}]
    soft += [{"label": a.label, "value": a.default, "minimum": a.minimum, "maximum": a.maximum, "step": step}
             for a, step in zip(SOFT_INPAINTING_ARGS, SOFT_INPAINTING_STEPS)]
    infos.append({"name": SOFT_INPAINTING.lower(), "is_alwayson": True, "is_img2img": True, "args": soft})
    return infos


def latent_upscale_modes() -> list[dict[str, str]]:
    from pipelines.generation.hires import LATENT_UPSCALE_MODES

    return [{"name": name} for name in LATENT_UPSCALE_MODES]


# 3. Server control (--api-server-stop) --------------------------------------------------------------------
def _stopper(request: Request) -> Callable[[], None]:
    """How this server shuts down gracefully: app.py / api.serve put it on app.state.stop_server."""
    stop = getattr(request.app.state, "stop_server", None)
    if stop is None:
        raise ApiError(501, "this server was not started by app.py: it cannot be stopped through the API")
    return stop


def stop_server(request: Request) -> Any:
    """A1111's server-stop: answer "Stopping.", then shut down gracefully (running requests finish)."""
    stop = _stopper(request)
    log.warning("Stopping the server (POST /sdapi/v1/server-stop)")
    stop()
    return PlainTextResponse("Stopping.")


def restart_server() -> Any:
    """A1111's server-restart (modules/restart.py): leave the restart marker and exit at once, for webui.sh
    to start the server again. webui.sh names the marker in SD_WEBUI_RESTART (tmp/restart, relative to the
    project); unset means nothing would start the server again: 501, as A1111."""
    marker = os.environ.get("SD_WEBUI_RESTART")
    if not marker:
        raise ApiError(501, "restart needs a launcher that starts the server again: run ./webui.sh")
    log.warning("Restarting the server (POST /sdapi/v1/server-restart)")
    path = PROJECT_ROOT / marker  # an absolute marker stays as it is
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os._exit(0)


def kill_server() -> Any:
    """A1111's server-kill: end the process at once (no answer is sent)."""
    log.warning("Killing the server (POST /sdapi/v1/server-kill)")
    os._exit(0)


def _empty_list(name: str) -> Callable[[], list]:
    def endpoint() -> Any:
        return []

    endpoint.__name__ = endpoint.__qualname__ = f"get_{name}"  # one OpenAPI operation id per route
    return endpoint


# 4. Routes ------------------------------------------------------------------------------------------------
def add_routes(route: Callable[..., None], api: Any) -> None:
    """Mount the routes above through create_api's `route(path, endpoint, method, response_model)`;
    `api` is the SdApi (its settings, models, engine queue)."""
    models, settings = api.models, api.settings

    def memory() -> Any:
        policy = getattr(models, "policy", None)
        return {"ram": ram_figures(), "cuda": cuda_figures(getattr(policy, "device", None))}

    async def unload_checkpoint() -> Any:
        await api._queued(SWITCH, models.unload_checkpoint)  # after the running job, never under it
        return {}

    async def reload_checkpoint() -> Any:
        await api._queued(SWITCH, models.reload_checkpoint)
        return {}

    def get_script_info() -> Any:
        return script_info(settings.models_dir)

    route("/latent-upscale-modes", latent_upscale_modes, "GET", list[LatentUpscalerModeItem])
    route("/memory", memory, "GET", MemoryResponse)
    route("/unload-checkpoint", unload_checkpoint, "POST")
    route("/reload-checkpoint", reload_checkpoint, "POST")
    route("/script-info", get_script_info, "GET", list[ScriptInfo])
    # None of these exist here (A1111's realesrgan-models lists its RealESRGAN models, not models/ESRGAN,
    # which GET /upscalers lists): real empty lists, so clients connect instead of failing on a 404.
    for path, item in (("/extensions", ExtensionItem), ("/face-restorers", FaceRestorerItem),
                       ("/realesrgan-models", RealesrganItem), ("/hypernetworks", HypernetworkItem)):
        route(path, _empty_list(path.strip("/").replace("-", "_")), "GET", list[item])
    if settings.api_server_stop:  # A1111 adds these three only with the flag: 404 without it
        route("/server-kill", kill_server, "POST")
        route("/server-restart", restart_server, "POST")
        route("/server-stop", stop_server, "POST")
