"""POST /sdapi/v1/txt2img: A1111's JSON (StableDiffusionTxt2ImgProcessingAPI) -> Txt2ImgRequest -> engine ->
A1111's response {images, parameters, info}, the same three steps as the img2img route (api/img2img.py):
prepare (validate before queueing, 422 naming the field), run_job (override_settings held for the job),
respond (PNGs with infotext, A1111's info JSON).

No `from __future__ import annotations`: FastAPI reads the endpoint's annotations through the error wrapper.
"""

import functools
from dataclasses import dataclass, fields
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request
from pydantic import Field

from api import img2img as img2img_job
from api.codec import encode_png
from api.errors import ApiError, field_error
from api.limits import cancel_when_disconnected
from api.models import ProcessingBody
from pipelines.fields import RequestError
from pipelines.generation.infotext_params import VERSION as ENGINE_VERSION
from pipelines.generation.progress import JobControl
from pipelines.generation.txt2img import TXT2IMG
from pipelines.generation.txt2img_request import Txt2ImgRequest

REQUEST_FIELDS = {f.name for f in fields(Txt2ImgRequest)}
# Options that name img2img's folders: txt2img keeps its own (outputs/txt2img-images, -grids).
IMG2IMG_ONLY_OPTIONS = ("outdir_img2img_samples", "outdir_img2img_grids", "initial_noise_multiplier")


class Txt2ImgBody(ProcessingBody):
    """POST /sdapi/v1/txt2img (A1111's StableDiffusionProcessingTxt2Img): the shared fields plus these."""

    denoising_strength: float | None = Field(default=0.75, description="Hires. fix second pass")
    sampler_index: str | int | None = Field(default="Euler", description="legacy: used when sampler_name is absent")
    firstpass_image: str | None = None
    enable_hr: bool | None = False
    firstphase_width: int | None = 0
    firstphase_height: int | None = 0
    hr_scale: float | None = 2.0
    hr_upscaler: str | None = Field(default=None, description='a latent mode ("Latent", ...) or an upscaler')
    hr_second_pass_steps: int | None = 0
    hr_resize_x: int | None = 0
    hr_resize_y: int | None = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = ""
    hr_negative_prompt: str | None = ""


# Fields A1111 has that this engine does not apply, with the value that means "not used".
_IGNORED = {"s_min_uncond": None, "s_churn": None, "s_tmax": None, "s_tmin": None, "s_noise": None,
            "refiner_checkpoint": None, "refiner_switch_at": None, "force_task_id": None, "infotext": None,
            "firstpass_image": None, "eta": None}
_USE_SAME = ("", "Use same sampler", "Use same scheduler", "Use same checkpoint")


@dataclass
class PreparedTxt2Img:
    body: Txt2ImgBody
    request: Txt2ImgRequest
    checkpoint: str | None
    vae: str | None
    restore_afterwards: bool
    script: None = None  # txt2img has no selectable scripts here (SD upscale and loopback are img2img's)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# 1. Prepare -------------------------------------------------------------------------------------------
def prepare(body: Txt2ImgBody, models: Any, options: dict[str, Any] | None = None, data_dir: Any = None,
            limits: Any = None) -> PreparedTxt2Img:
    _reject_unavailable(body)
    request = build_request(body)
    changes, notices = option_changes(body, options or {}, data_dir)
    notices += [f"{name} is not applied by this engine; ignored" for name, unused in _IGNORED.items()
                if getattr(body, name) not in (unused, "")]
    request = request.replace(**changes, notices=tuple(notices))
    try:
        request.validate()
        if limits is not None:
            width, height = request.output_size
            limits.check_job("n_iter", width, height, request.batch_size * request.n_iter)
    except RequestError as exc:
        raise field_error(exc.field, exc.message) from None
    overrides = body.override_settings or {}
    checkpoint = img2img_job._checkpoint_title(models, overrides.get("sd_model_checkpoint"))
    vae = img2img_job._vae_choice(models, overrides.get("sd_vae"))
    return PreparedTxt2Img(body, request, checkpoint, vae, _or(body.override_settings_restore_afterwards, True))


def _reject_unavailable(body: Txt2ImgBody) -> None:
    """Loud errors instead of silently ignoring what the client asked for."""
    if body.restore_faces:
        raise field_error("restore_faces", "face restoration is not available in this server; send false")
    if body.tiling:
        raise field_error("tiling", "tiling is not available in this server; send false")
    if body.script_name:
        raise field_error("script_name", f"txt2img script {body.script_name!r} not found; this server has no "
                                         "txt2img scripts (SD upscale, loopback and outpainting are img2img's)")
    if body.alwayson_scripts:
        raise field_error("alwayson_scripts", "txt2img has no always-on scripts in this server")
    if body.hr_checkpoint_name not in (None, *_USE_SAME):
        raise field_error("hr_checkpoint_name", "a second checkpoint for Hires. fix is not available; send null")
    if body.firstphase_width or body.firstphase_height:
        raise field_error("firstphase_width", "the old Hires. fix sizing is not available; use hr_scale or "
                                              "hr_resize_x / hr_resize_y")


def option_changes(body: Txt2ImgBody, stored: dict[str, Any], data_dir: Any) -> tuple[dict[str, Any], list[str]]:
    """Stored options (less img2img's own), then override_settings on top, as request changes and notices."""
    stored = {k: v for k, v in stored.items() if k not in IMG2IMG_ONLY_OPTIONS}
    return img2img_job.stored_then_overrides(stored, body.override_settings, REQUEST_FIELDS, data_dir)


def build_request(body: Txt2ImgBody) -> Txt2ImgRequest:
    """Map A1111's fields (API defaults) onto the engine's request. Ranges are checked by validate()."""
    sampler = body.sampler_name or _sampler_from_index(body.sampler_index)
    return Txt2ImgRequest(
        prompt=_or(body.prompt, ""), negative_prompt=_or(body.negative_prompt, ""),
        width=_or(body.width, 512), height=_or(body.height, 512), steps=_or(body.steps, 50),
        cfg_scale=_or(body.cfg_scale, 7.0), sampler_name=sampler, scheduler=_or(body.scheduler, "Automatic"),
        seed=_or(body.seed, -1), subseed=_or(body.subseed, -1), subseed_strength=_or(body.subseed_strength, 0.0),
        batch_size=_or(body.batch_size, 1), n_iter=_or(body.n_iter, 1),
        enable_hr=bool(body.enable_hr), denoising_strength=_or(body.denoising_strength, 0.75),
        hr_scale=_or(body.hr_scale, 2.0), hr_upscaler=body.hr_upscaler,
        hr_second_pass_steps=_or(body.hr_second_pass_steps, 0), hr_resize_x=_or(body.hr_resize_x, 0),
        hr_resize_y=_or(body.hr_resize_y, 0),
        hr_sampler_name=None if body.hr_sampler_name in (None, *_USE_SAME) else body.hr_sampler_name,
        hr_scheduler=None if body.hr_scheduler in (None, *_USE_SAME) else body.hr_scheduler,
        hr_prompt=_or(body.hr_prompt, ""), hr_negative_prompt=_or(body.hr_negative_prompt, ""),
        save_images=bool(body.save_images) and not body.do_not_save_samples,
        grid_save=not body.do_not_save_grid, styles=tuple(body.styles or ()),
    )


def _sampler_from_index(index: Any) -> str:
    from pipelines.generation.samplers import SAMPLER_NAMES

    if isinstance(index, int) and not isinstance(index, bool):
        if not 0 <= index < len(SAMPLER_NAMES):
            raise field_error("sampler_index", f"{index} is outside 0..{len(SAMPLER_NAMES) - 1}")
        return SAMPLER_NAMES[index]
    return index or img2img_job.DEFAULT_SAMPLER


# 2. Run (one at a time) ---------------------------------------------------------------------------------
def run_job(job: PreparedTxt2Img, engine: Any, models: Any, tracker: Any, queue: Any,
            control: JobControl | None = None) -> tuple[Any, Any]:
    """One queued job: override switch, the run, the model facts, the restore (api/img2img.py's run_job)."""
    with queue.hold(TXT2IMG, control) as queued:
        if queued.control.interrupted:
            raise ApiError(499, "the client closed the connection before the job's turn; dropped")
        tracker.begin("txt2img", queued.id)
        timestamp = tracker.timestamp
        try:
            with img2img_job._overrides(job, models):
                try:
                    result = engine.txt2img(job.request, tracker.report, queued.control)
                except RequestError as exc:
                    raise field_error(exc.field, exc.message) from None
                model = models.current
                facts = img2img_job.ModelFacts(model.info.name, model.info.short_hash, model.vae_name,
                                               model.vae_hash, False, timestamp)
                return result, facts
        finally:
            tracker.end()


# 3. Respond ----------------------------------------------------------------------------------------------
def respond(job: PreparedTxt2Img, result: Any, facts: Any, version: str) -> dict[str, Any]:
    images = []
    if job.body.send_images:
        images = [encode_png(image, text) for image, text in zip(result.images, result.infotexts)]
    info = img2img_job.info_json(job, result, facts, version)
    return {"images": images, "parameters": job.body.model_dump(), "info": info}


def txt2img_endpoint(api: Any) -> Any:
    """The route's handler over one mounted SdApi (its engine, models, options, tracker and queue)."""

    async def txt2img(body: Txt2ImgBody, request: Request) -> Any:
        job = await anyio.to_thread.run_sync(prepare, body, api.models, api.options.as_dict(),
                                             api.settings.data_dir, api.limits)
        control = JobControl()  # the job's own: interrupted if the client leaves
        run = functools.partial(anyio.to_thread.run_sync, run_job, job, api.engine, api.models, api.tracker,
                                api.queue, control, limiter=api.waiters)
        result, facts = await cancel_when_disconnected(request, run, control, api.queue)
        return await anyio.to_thread.run_sync(respond, job, result, facts, ENGINE_VERSION)

    return txt2img
