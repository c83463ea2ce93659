"""The /sdapi/v1 routes, speaking A1111's contract. `create_api` mounts them on any FastAPI app.

Concurrency: generation (with its override_settings switch and restore), model switches and interrogation
are jobs in the engine's one job queue (pipelines/generation/queue.py), shared with the web UI: FIFO, one
at a time. Each waits in a worker thread, so the event loop stays free: GET /progress, POST /interrupt
and /skip answer at once, and address only the job the queue is running, never a queued one.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations through the error
wrapper (api.errors.json_errors), so they must be real objects, not strings.
"""

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Body, Depends, FastAPI, Request

from api import extras as extras_routes
from api import img2img as img2img_job
from api import listings, networks, probes
from api.alwayson import ALWAYSON_TITLES
from api.auth import basic_auth_dependency
from api.codec import decode_image, encode_png, other_text_items
from api.docs import install_docs
from api.errors import ApiError, field_error, json_errors
from api.limits import body_limited_route, cancel_when_disconnected
from api.models import (
    ImageToImageResponse,
    Img2ImgBody,
    InterrogateRequest,
    InterrogateResponse,
    PNGInfoRequest,
    PNGInfoResponse,
    ProgressResponse,
    SamplerItem,
    SchedulerItem,
    SDModelItem,
    SDVaeItem,
    UpscalerItem,
)
from api.request_log import logged_route
from api.scripts import ScriptCatalog
from api.state import JobTracker, OptionsStore
from api.txt2img import txt2img_endpoint
from pipelines.fields import RequestError
from pipelines.generation.infotext_params import VERSION as ENGINE_VERSION
from pipelines.generation.progress import JobControl
from pipelines.generation.queue import INTERROGATE, SWITCH, JobQueue
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext
from pipelines.io.styles import StyleDatabase
from pipelines.launch_flags import Settings, api_credentials
from pipelines.limits import ImageBudget, Limits
from pipelines.options import check_options, known_options, option_defaults, samples_dir

log = logging.getLogger("api")
PREFIX = "/sdapi/v1"

INTERROGATE_MODELS = ("clip", "deepdanbooru")


def _default_outdir(settings: Settings) -> str:
    """Where img2img outputs go by default, as A1111 shows it: relative to the data dir when inside it."""
    folder = Path(settings.outputs_dir) / "img2img-images"
    try:
        return folder.resolve().relative_to(Path(settings.data_dir).resolve()).as_posix()
    except ValueError:
        return str(folder)


class SdApi:
    """State and endpoints of one mounted API: the engine and models it drives, its queue and trackers."""

    def __init__(
        self,
        settings: Settings,
        models: Any,
        engine: Any,
        scripts: Any = None,
        interrogator: Any = None,
        upscalers: Callable[[], Iterable[Any]] | None = None,
    ):
        self.settings = settings
        self.models = models
        self.engine = engine
        self.catalog = ScriptCatalog(scripts)
        self.interrogator = interrogator
        self.upscaler_provider = upscalers
        self.tracker = JobTracker()
        # Every option at A1111's default (pipelines/options.py); the output folder as this server's is.
        self.options = OptionsStore(
            {**option_defaults(), "outdir_img2img_samples": _default_outdir(settings)}
        )
        self.queue: JobQueue = engine.queue  # the one queue every front end submits to
        # Jobs wait for their turn in worker threads: their own pool, so waiting jobs never starve the
        # threads that decode and encode images for other requests.
        self.waiters = anyio.CapacityLimiter(64)
        # Request limits (pipelines/limits.py): the engine's, else the launch flags'.
        self.limits: Limits = getattr(engine, "limits", None) or Limits.from_settings(settings)

    async def _queued(self, kind: str, func: Callable[..., Any], *args: Any) -> Any:
        """func(*args) as one job in the queue, waited for in a worker thread."""
        return await anyio.to_thread.run_sync(self.queue.run, kind, func, *args, limiter=self.waiters)

    # img2img ----------------------------------------------------------------------------------------
    async def img2img(self, body: Img2ImgBody, request: Request) -> Any:
        stored = {k: v for k, v in self.options.as_dict().items() if k != "outdir_img2img_samples"}
        outdir = self.options.as_dict().get("outdir_img2img_samples")
        if outdir != _default_outdir(self.settings):  # the default folder is the engine's own
            stored["outdir_img2img_samples"] = outdir
        job = await anyio.to_thread.run_sync(
            img2img_job.prepare, body, self.models, self.catalog, stored, self.settings.data_dir, self.limits
        )
        control = JobControl()  # the job's own: interrupted if the client leaves (A1111 keeps going)
        run = functools.partial(anyio.to_thread.run_sync, img2img_job.run_job, job, self.engine, self.models,
                                self.catalog, self.tracker, self.queue, control, limiter=self.waiters)
        result, facts = await cancel_when_disconnected(request, run, control, self.queue)
        return await anyio.to_thread.run_sync(img2img_job.respond, job, result, facts, ENGINE_VERSION)

    # progress / interrupt / skip (async: never wait behind a job) ------------------------------------
    async def progress(self, skip_current_image: bool = False) -> Any:
        """The queue's running job: an API job as the tracker saw it (a script's whole-job progress and
        its latest preview), any other job (the web UI's) through the queue's record of it."""
        running = self.queue.running
        snap = self.tracker.snapshot()
        mine = snap.active and running is not None and snap.job_id == running.id
        active = running is not None
        update = snap.update if mine else (running.update if running is not None else None)
        state = {
            "skipped": snap.skipped,
            "interrupted": snap.interrupted,
            "stopping_generation": False,
            "job": snap.job if mine else (running.kind if running is not None else ""),
            "job_count": (update.job_count if update else 1) if active else 0,
            "job_timestamp": snap.job_timestamp,
            "job_no": update.job if update and active else 0,
            "sampling_step": update.step if update and active else 0,
            "sampling_steps": update.steps if update and active else 0,
        }
        if not active:
            return {
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }
        preview = snap.preview if mine else (update.preview if update else None)
        current = None if skip_current_image or preview is None else encode_png(preview)
        return {
            "progress": update.fraction if update else 0.0,
            "eta_relative": (update.eta or 0.0) if update else 0.0,
            "state": state,
            "current_image": current,
            "textinfo": (update.text or None) if update else None,
        }

    async def interrupt(self) -> Any:
        self.tracker.interrupt()
        self.queue.interrupt()  # the running job only (whichever front end started it)
        return {}

    async def skip(self) -> Any:
        self.tracker.skip()
        self.queue.skip()  # the running job's current batch; a no-op between batches
        return {}

    # png-info / interrogate ----------------------------------------------------------------------
    def png_info(self, body: PNGInfoRequest) -> Any:
        image = decode_image(body.image, "image", ImageBudget(self.limits))
        geninfo = read_infotext(image) or ""
        return {
            "info": geninfo,
            "items": other_text_items(image),
            "parameters": parse_infotext(geninfo) if geninfo else {},
        }

    async def interrogate(self, body: InterrogateRequest) -> Any:
        if self.interrogator is None:
            raise ApiError(
                501,
                "Interrogation is not available: this server was started without an "
                "interrogator (it needs the BLIP and CLIP models in models/BLIP, models/CLIP)",
            )
        model = (body.model or "clip").lower()
        if model not in INTERROGATE_MODELS:
            raise field_error(
                "model", f"{body.model!r} not found; valid: {', '.join(INTERROGATE_MODELS)}", 404
            )
        if not body.image:
            raise ApiError(404, "Image not found", "image")  # A1111's text
        image = await anyio.to_thread.run_sync(decode_image, body.image, "image", ImageBudget(self.limits))
        caption = await self._queued(INTERROGATE, self._run_interrogator, model, image.convert("RGB"))
        return {"caption": caption}

    def _run_interrogator(self, model: str, image: Any) -> str:
        if model == "clip":
            method = self.interrogator.interrogate
        else:
            method = getattr(self.interrogator, "interrogate_deepbooru", None)
            if method is None:
                raise field_error("model", "deepdanbooru is not available; valid: clip", 404)
        try:
            return method(image)
        except (RequestError, ApiError):
            raise
        except Exception as exc:  # missing models and the like: say why, as a JSON 500
            log.warning("interrogate failed: %s", exc)
            raise ApiError(500, f"Interrogate failed: {exc}") from exc

    # options / flags ---------------------------------------------------------------------------------
    def get_options(self) -> Any:
        # an unloaded checkpoint is named without loading it again
        info = getattr(self.models, "active_info", None) or self.models.current.info
        values = self.options.as_dict()
        values["sd_model_checkpoint"] = info.title
        values["sd_checkpoint_hash"] = listings.full_hash(self.models, info)
        values["sd_vae"] = self.models.vae_choice
        return values

    async def set_options(self, values: Annotated[dict[str, Any], Body()]) -> Any:
        """A1111's POST /options: known options are checked (type, range, choices; output folders inside the
        data dir) before anything is applied; unknown keys are ignored with a notice, never stored."""
        values, notices = known_options(values)
        try:
            values = check_options(values)
            if values.get("outdir_img2img_samples") not in (None, "", _default_outdir(self.settings)):
                samples_dir(self.settings.data_dir, values["outdir_img2img_samples"])
        except RequestError as exc:
            raise field_error(exc.field, exc.message) from None
        title = vae = None
        if values.get("sd_model_checkpoint") not in (None, ""):
            name = values["sd_model_checkpoint"]
            if not isinstance(name, str):
                raise field_error("sd_model_checkpoint", f"{name!r} is not a checkpoint name")
            title = await anyio.to_thread.run_sync(
                img2img_job.find_checkpoint_title, self.models, name, "sd_model_checkpoint"
            )
        if values.get("sd_vae") not in (None, ""):
            vae = await anyio.to_thread.run_sync(
                img2img_job.check_vae_choice, self.models, values["sd_vae"], "sd_vae"
            )
        if title is not None or vae is not None:
            await self._queued(SWITCH, self._switch_model, title, vae)
        self.options.update({k: v for k, v in values.items() if k not in ("sd_model_checkpoint", "sd_vae")})
        return {"notices": notices}

    def _switch_model(self, title: str | None, vae: str | None) -> None:
        if title is not None:
            self.models.load(title)
        if vae is not None:
            self.models.set_vae(vae)

    # lists ---------------------------------------------------------------------------------------------
    def cmd_flags(self) -> Any:
        return listings.cmd_flags(self.settings)

    def samplers(self) -> Any:
        return listings.samplers()

    def schedulers(self) -> Any:
        return listings.schedulers()

    def upscalers(self) -> Any:
        return listings.upscalers(self.upscaler_provider)

    def sd_models(self) -> Any:
        return listings.sd_models(self.models)

    def sd_vae(self) -> Any:
        return listings.sd_vae(self.models)

    def scripts(self) -> Any:
        """A1111 lists every img2img script by its lower-case name, the always-on ones too."""
        names = [n.lower() for n in (self.catalog.names() or [])]
        return {"txt2img": [], "img2img": names + [t.lower() for t in ALWAYSON_TITLES]}

    def refresh_checkpoints(self) -> Any:
        self.models.refresh()
        return None

    def refresh_vae(self) -> Any:
        self.models.refresh()
        return None


def create_api(
    app: FastAPI,
    *,
    settings: Settings,
    models: Any,
    engine: Any,
    scripts: Any = None,
    interrogator: Any = None,
    upscalers: Callable[[], Iterable[Any]] | None = None,
    auth: list[tuple[str, str]] | None = None,
    guard: Callable[..., None] | None = None,
) -> SdApi:
    """Mount /sdapi/v1 (and /docs, /openapi.json) on `app`. `auth`: Basic credentials; None -> the
    launch flags' (--api-auth, else --gradio-auth). `guard`: a ready auth dependency instead (server_auth.py:
    Basic or the UI's log-in cookie, with the server's log-in throttle).

    Mount it before anything that catches every path (gr.mount_gradio_app(app, blocks, path="/")), since
    routes match in order. Returns the SdApi (its tracker and options) for tests and the UI.
    """
    credentials = auth if auth is not None else api_credentials(settings)
    api = SdApi(settings, models, engine, scripts, interrogator, upscalers)
    if guard is None and credentials:
        guard = basic_auth_dependency(credentials)
    dependencies = [Depends(guard)] if guard is not None else []

    # 413 past --api-max-body-mb; every failed answer logged on one line (api/request_log.py)
    body_route = logged_route(body_limited_route(api.limits.max_body_bytes))

    def route(path: str, endpoint: Callable[..., Any], method: str, response_model: Any = None) -> None:
        app.router.add_api_route(  # the router's: it takes the route class
            PREFIX + path,
            json_errors(endpoint),
            methods=[method],
            response_model=response_model,
            dependencies=dependencies,
            tags=["sdapi"],
            route_class_override=body_route,
        )

    route("/txt2img", txt2img_endpoint(api), "POST", ImageToImageResponse)
    route("/img2img", api.img2img, "POST", ImageToImageResponse)
    route("/png-info", api.png_info, "POST", PNGInfoResponse)
    route("/progress", api.progress, "GET", ProgressResponse)
    route("/interrogate", api.interrogate, "POST", InterrogateResponse)
    route("/interrupt", api.interrupt, "POST")
    route("/skip", api.skip, "POST")
    route("/options", api.get_options, "GET", dict[str, Any])
    route("/options", api.set_options, "POST")
    route("/cmd-flags", api.cmd_flags, "GET", dict[str, Any])
    route("/samplers", api.samplers, "GET", list[SamplerItem])
    route("/schedulers", api.schedulers, "GET", list[SchedulerItem])
    route("/upscalers", api.upscalers, "GET", list[UpscalerItem])
    route("/sd-models", api.sd_models, "GET", list[SDModelItem])
    route("/sd-vae", api.sd_vae, "GET", list[SDVaeItem])
    route("/scripts", api.scripts, "GET", dict[str, Any])
    route("/refresh-checkpoints", api.refresh_checkpoints, "POST")
    route("/refresh-vae", api.refresh_vae, "POST")
    # LoRA, embeddings and styles: A1111's lists and refresh calls (api/networks.py)
    networks.add_routes(route, models, getattr(engine, "styles", None) or StyleDatabase(settings.styles_path))
    extras_routes.add_routes(route, api)  # Extras upscale (api/extras.py)
    probes.add_routes(route, api)  # memory, script-info, unload/reload, server-stop... (api/probes.py)
    install_docs(app, PREFIX, dependencies)
    app.state.sdapi = api
    return api
