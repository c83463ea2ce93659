"""POST /sdapi/v1/img2img: A1111's JSON -> Img2ImgRequest -> engine (or a script) -> A1111's response.

Three steps, each a plain function so the route stays thin:
1. `prepare`  (worker thread, before queueing): decode images, map fields, validate -> PreparedJob, or a
   4xx error naming the field. Nothing waits in the queue only to fail on a typo.
2. `run_job`  (worker thread, one job in the engine's queue): apply override_settings, run, capture model
   facts, restore -- all while holding the model, so no other job runs on the overridden model.
3. `respond`  (worker thread, after the queue): PNG-encode with infotext, build the info JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from api.alwayson import parse_alwayson
from api.codec import decode_image, encode_png
from api.errors import ApiError, field_error
from api.limits import check_before_decoding, check_before_queueing
from api.models import Img2ImgBody
from api.scripts import ScriptCatalog
from api.state import JobTracker
from pipelines.fields import InpaintArea, RequestError
from pipelines.generation.progress import JobControl
from pipelines.generation.queue import IMG2IMG, SCRIPT, JobQueue
from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SAMPLER_NAMES, resolve_sampler
from pipelines.io.infotext import parse_infotext
from pipelines.limits import Limits
from pipelines.models.model_manager import ModelManager, ModelNotFound
from pipelines.options import apply_options

REQUEST_FIELDS = {f.name for f in dataclasses.fields(Img2ImgRequest)}

# Img2ImgRequest field -> the API field a client sent, so errors name what the client wrote.
API_FIELD_FOR = {
    "init_image": "init_images",
    "batch_images": "init_images",
    "mask_mode": "inpainting_mask_invert",
    "masked_content": "inpainting_fill",
    "inpaint_area": "inpaint_full_res",
    "only_masked_padding": "inpaint_full_res_padding",
}
DEFAULT_SAMPLER = "Euler"  # A1111's API default (its sampler_index field)
# Keys every infotext has; the rest of an infotext is A1111's "extra_generation_params".
STANDARD_INFOTEXT_KEYS = {
    "Prompt",
    "Negative prompt",
    "Steps",
    "Sampler",
    "CFG scale",
    "Seed",
    "Size-1",
    "Size-2",
    "Model hash",
    "Model",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "RNG",
    "Version",
}  # "Denoising strength" is not one: A1111's img2img puts it in extra_generation_params


@dataclass
class PreparedJob:
    body: Img2ImgBody
    request: Img2ImgRequest
    script: str | None  # canonical script name
    checkpoint: str | None  # override_settings' sd_model_checkpoint, as a loadable title
    vae: str | None  # override_settings' sd_vae
    restore_afterwards: bool


@dataclass
class ModelFacts:
    """The model a job actually ran on (captured before override_settings are restored)."""

    name: str
    short_hash: str | None
    vae_name: str | None
    vae_hash: str | None
    inpainting_conditioning: bool
    job_timestamp: str = ""


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def api_field_error(exc: RequestError, body: Img2ImgBody) -> ApiError:
    """A RequestError from validation or a script, renamed to the API field the client sent."""
    name = API_FIELD_FOR.get(exc.field, exc.field)
    if exc.field in ("mask_blur_x", "mask_blur_y") and body.mask_blur is not None:
        name = "mask_blur"
    if exc.field == "sampler_name" and body.sampler_name is None and body.sampler_index is not None:
        name = "sampler_index"
    if not (name in Img2ImgBody.model_fields or name.startswith(("init_images", "script_args"))):
        name = f"script_args ({name})" if body.script_name else name
    return field_error(name, exc.message)


# 1. Prepare -------------------------------------------------------------------------------------------
def prepare(body: Img2ImgBody, models: ModelManager, catalog: ScriptCatalog,
            options: dict[str, Any] | None = None, data_dir: Any = None, limits: Limits | None = None) -> PreparedJob:
    """`options`: the values POST /options stored (they apply to every run, override_settings on top);
    `data_dir`: the folder output-folder options must stay in; `limits`: the server's request limits."""
    if not body.init_images:
        raise ApiError(404, "Init image not found", "init_images")  # A1111's text and status
    limits = limits or Limits()
    _reject_unavailable_features(body)
    alwayson = parse_alwayson(body.alwayson_scripts)
    script = catalog.resolve(body.script_name) if body.script_name else None
    try:
        budget = check_before_decoding(body, limits)  # counts and prompts, before any image is decoded
    except RequestError as exc:
        raise api_field_error(exc, body) from None
    images = [decode_image(text, f"init_images[{i}]", budget) for i, text in enumerate(body.init_images)]
    mask = decode_image(body.mask, "mask", budget) if body.mask else None
    request = build_request(body, images, mask)
    changes, notices = _option_changes(body, options or {}, data_dir)
    changes.update(alwayson.changes)
    notices += alwayson.notices + ignored_field_notices(body)
    request = request.replace(**changes, notices=tuple(notices))
    try:
        request.validate()
        check_before_queueing(request, body, script, models, catalog, limits)
    except RequestError as exc:
        raise api_field_error(exc, body) from None
    overrides = body.override_settings or {}
    checkpoint = _checkpoint_title(models, overrides.get("sd_model_checkpoint"))
    vae = _vae_choice(models, overrides.get("sd_vae"))
    return PreparedJob(
        body, request, script, checkpoint, vae, _or(body.override_settings_restore_afterwards, True)
    )


def _reject_unavailable_features(body: Img2ImgBody) -> None:
    """Loud errors instead of silently ignoring what the client asked for."""
    if body.restore_faces:
        raise field_error("restore_faces", "face restoration is not available in this server; send false")
    if body.tiling:
        raise field_error("tiling", "tiling is not available in this server; send false")


def stored_then_overrides(stored: dict[str, Any], overrides: dict[str, Any] | None, request_fields: set[str],
                          data_dir: Any) -> tuple[dict[str, Any], list[str]]:
    """Request changes from the stored options, then override_settings on top (A1111's order), with a notice for
    what is not applied; a bad override is a 422 naming override_settings.<option>."""
    changes: dict[str, Any] = {}
    notices: list[str] = []
    for source, values in (("options", stored), ("override_settings", overrides or {})):
        try:
            applied = apply_options(values, request_fields, data_dir=data_dir, source=source,
                                    unknown_notice=source == "override_settings")
        except RequestError as exc:
            raise field_error(f"{source}.{exc.field}" if source == "override_settings" else exc.field,
                              exc.message) from None
        changes.update(applied.changes)
        notices += applied.notices
    return changes, notices


def _option_changes(body: Img2ImgBody, stored: dict[str, Any], data_dir: Any) -> tuple[dict[str, Any], list[str]]:
    """The options' changes, then the body fields A1111 lets override an option (initial_noise_multiplier,
    eta)."""
    changes, notices = stored_then_overrides(stored, body.override_settings, REQUEST_FIELDS, data_dir)
    for name in ("initial_noise_multiplier", "eta"):
        value = getattr(body, name)
        if value is None:
            continue
        if name in REQUEST_FIELDS:
            changes[name] = value
        else:
            notices.append(f"{name} = {value!r} is not applied by this engine; ignored")
    return changes, notices


# Body fields A1111 has that this engine does not apply, with the value that means "not used".
_IGNORED_FIELDS = {
    "latent_mask": None,
    "image_cfg_scale": None,
    "s_min_uncond": None,
    "s_churn": None,
    "s_tmax": None,
    "s_tmin": None,
    "s_noise": None,
    "refiner_checkpoint": None,
    "refiner_switch_at": None,
    "force_task_id": None,
    "infotext": None,
}


def ignored_field_notices(body: Img2ImgBody) -> list[str]:
    """A notice for every A1111 field the client set that this engine does not use (never silent success)."""
    notices = [f"{name} is not applied by this engine; ignored" for name, unused in _IGNORED_FIELDS.items()
               if getattr(body, name) not in (unused, "")]
    for name in ("seed_resize_from_w", "seed_resize_from_h"):
        if (getattr(body, name) or -1) > 0:
            notices.append(f"{name} is not applied by this engine (seed resize); ignored")
    return notices


def sampler_from(body: Img2ImgBody) -> str:
    if body.sampler_name:
        return body.sampler_name
    index = body.sampler_index
    if isinstance(index, int) and not isinstance(index, bool):
        if not 0 <= index < len(SAMPLER_NAMES):
            raise field_error("sampler_index", f"{index} is outside 0..{len(SAMPLER_NAMES) - 1}")
        return SAMPLER_NAMES[index]
    return index or DEFAULT_SAMPLER


def build_request(body: Img2ImgBody, images: list, mask) -> Img2ImgRequest:
    """Map A1111's fields (API defaults) onto the engine's request. Ranges are checked by validate()."""
    blur_x = _or(body.mask_blur, _or(body.mask_blur_x, 4))
    blur_y = _or(body.mask_blur, _or(body.mask_blur_y, 4))
    only_masked = bool(_or(body.inpaint_full_res, True)) and mask is not None
    batch_size = _or(body.batch_size, 1)
    extra: dict[str, Any] = {}
    if len(images) > 1:
        # A1111: several init images form one batch, image i with seed + i (more than batch_size: error).
        if len(images) > batch_size:
            raise field_error(
                "init_images",
                f"{len(images)} images but batch_size is {batch_size}; send at most batch_size images",
            )
        batch_size = len(images)
        extra["batch_images"] = tuple(images)
    return Img2ImgRequest(
        init_image=images[0],
        prompt=_or(body.prompt, ""),
        negative_prompt=_or(body.negative_prompt, ""),
        width=_or(body.width, 512),
        height=_or(body.height, 512),
        resize_mode=_or(body.resize_mode, 0),
        denoising_strength=_or(body.denoising_strength, 0.75),
        steps=_or(body.steps, 50),
        cfg_scale=_or(body.cfg_scale, 7.0),
        sampler_name=sampler_from(body),
        scheduler=_or(body.scheduler, "Automatic"),
        seed=_or(body.seed, -1),
        subseed=_or(body.subseed, -1),
        subseed_strength=_or(body.subseed_strength, 0.0),
        batch_size=batch_size,
        n_iter=_or(body.n_iter, 1),
        mask=mask,
        mask_blur_x=blur_x,
        mask_blur_y=blur_y,
        mask_mode=_or(body.inpainting_mask_invert, 0),
        masked_content=_or(body.inpainting_fill, 0),
        inpaint_area=InpaintArea.ONLY_MASKED if only_masked else InpaintArea.WHOLE_PICTURE,
        only_masked_padding=_or(body.inpaint_full_res_padding, 0),
        save_images=bool(body.save_images),
        styles=tuple(body.styles or ()),  # applied from styles.csv by the engine (unknown names: a notice)
        **extra,
    )


def _checkpoint_title(models: ModelManager, name: Any) -> str | None:
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise field_error("override_settings.sd_model_checkpoint", f"{name!r} is not a checkpoint name")
    return find_checkpoint_title(models, name, "override_settings.sd_model_checkpoint")


def find_checkpoint_title(models: ModelManager, name: str, field: str) -> str:
    """The title of checkpoint `name` (title, name, file name or hash); rescans the folders once on a
    miss, as A1111 does; 404 listing the known titles if it is still unknown."""
    try:
        return models.find_checkpoint(name).title
    except ModelNotFound:
        models.refresh()
    try:
        return models.find_checkpoint(name).title
    except ModelNotFound:
        known = ", ".join(repr(t) for t in models.checkpoint_titles())
        raise field_error(field, f"checkpoint {name!r} not found; known: {known}", status=404) from None


def _vae_choice(models: ModelManager, name: Any) -> str | None:
    if name is None or name == "":
        return None
    return check_vae_choice(models, name, "override_settings.sd_vae")


def check_vae_choice(models: ModelManager, name: Any, field: str) -> str:
    if name not in models.vae_choices():
        models.refresh()
    if name not in models.vae_choices():
        known = ", ".join(repr(v) for v in models.vae_choices())
        raise field_error(field, f"VAE {name!r} not found; known: {known}", status=404)
    return name


# 2. Run (one at a time) ---------------------------------------------------------------------------------
def run_job(
    job: PreparedJob,
    engine: Any,
    models: ModelManager,
    catalog: ScriptCatalog,
    tracker: JobTracker,
    queue: JobQueue,
    control: JobControl | None = None,
) -> tuple[Any, ModelFacts]:
    """One queued job: override switch, the run, the model facts, the restore. The engine's and the
    script's own submits run inline inside it (the queue is re-entrant per thread). `control`: the job's
    (interrupted before its turn -- the client left -- it is dropped without running)."""
    with queue.hold(SCRIPT if job.script else IMG2IMG, control) as queued:
        if queued.control.interrupted:
            raise ApiError(499, "the client closed the connection before the job's turn; dropped")
        tracker.begin("scripts_img2img" if job.script else "img2img", queued.id)
        timestamp = tracker.timestamp
        try:
            with _overrides(job, models):
                try:
                    if job.script:
                        args = list(job.body.script_args or [])
                        result = catalog.run(job.script, job.request, args, tracker.report, queued.control)
                    else:
                        result = engine.img2img(job.request, tracker.report, queued.control)
                except RequestError as exc:
                    raise api_field_error(exc, job.body) from None
                return result, _model_facts(models, job.request, timestamp)
        finally:
            tracker.end()


@contextlib.contextmanager
def _overrides(job: PreparedJob, models: ModelManager) -> Iterator[None]:
    """override_settings for one request: switch checkpoint / VAE, then (by default) switch back. Called
    inside the request's queued job, so switch, run and restore are one unit."""
    previous_title = previous_vae = None
    try:
        if job.checkpoint is not None and job.checkpoint != models.current.info.title:
            previous_title = models.current.info.title
            models.load(job.checkpoint)
        if job.vae is not None and job.vae != models.vae_choice:
            previous_vae = models.vae_choice
            models.set_vae(job.vae)
        yield
    finally:
        if job.restore_afterwards:
            with contextlib.suppress(Exception):
                if previous_vae is not None:
                    models.set_vae(previous_vae)
                if previous_title is not None:
                    models.load(previous_title)


def _model_facts(models: ModelManager, request: Img2ImgRequest, job_timestamp: str) -> ModelFacts:
    model = models.current
    return ModelFacts(
        model.info.name,
        model.info.short_hash,
        model.vae_name,
        model.vae_hash,
        bool(model.components.is_inpainting and request.mask is not None),
        job_timestamp,
    )


# 3. Respond ----------------------------------------------------------------------------------------------
def respond(job: PreparedJob, result: Any, facts: ModelFacts, version: str) -> dict[str, Any]:
    body = job.body
    images = []
    if body.send_images:
        # A script may add images without an infotext of their own (a grid): those go out without one.
        infotexts = list(result.infotexts) + [None] * (len(result.images) - len(result.infotexts))
        images = [encode_png(image, text) for image, text in zip(result.images, infotexts)]
    parameters = body.model_dump()
    if not body.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    info = info_json(job, result, facts, version)
    return {"images": images, "parameters": parameters, "info": info}


def _typed(value: str) -> Any:
    """An infotext value as A1111's extra_generation_params holds it: numbers as numbers, the rest text."""
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value  # "nan" / "inf" stay text (valid JSON)
    return value


def info_json(job: PreparedJob, result: Any, facts: ModelFacts, version: str) -> str:
    """A1111's Processed.js(): what a client needs to know about the run, as a JSON string."""
    req, body = job.request, job.body
    # A grid leads images and infotexts (index_of_first_image = 1); all_* lists hold the real images only.
    first_image = getattr(result, "index_of_first_image", 0)
    parsed = [parse_infotext(text) for text in result.infotexts[first_image:]]
    all_prompts = [p.get("Prompt", req.prompt) for p in parsed] or [req.prompt]
    all_negative = [p.get("Negative prompt", req.negative_prompt) for p in parsed] or [req.negative_prompt]
    first = parsed[0] if parsed else {}
    extra = {k: _typed(v) for k, v in first.items() if k not in STANDARD_INFOTEXT_KEYS}
    info = {
        "prompt": all_prompts[0],
        "all_prompts": all_prompts,
        "negative_prompt": all_negative[0],
        "all_negative_prompts": all_negative,
        "seed": result.seed,
        "all_seeds": list(result.seeds),
        "subseed": result.subseed,
        "all_subseeds": list(result.subseeds),
        "subseed_strength": req.subseed_strength,
        "width": req.width,
        "height": req.height,
        "sampler_name": resolve_sampler(req.sampler_name, req.scheduler).name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": facts.name,
        "sd_model_hash": facts.short_hash,
        "sd_vae_name": facts.vae_name,
        "sd_vae_hash": facts.vae_hash,
        "seed_resize_from_w": _or(body.seed_resize_from_w, -1),
        "seed_resize_from_h": _or(body.seed_resize_from_h, -1),
        "denoising_strength": req.denoising_strength,
        "extra_generation_params": extra,
        "index_of_first_image": first_image,
        "infotexts": list(result.infotexts),
        "styles": list(body.styles or []),
        "job_timestamp": facts.job_timestamp,
        "clip_skip": req.clip_skip,
        "is_using_inpainting_conditioning": facts.inpainting_conditioning,
        "version": version,
        "interrupted": bool(getattr(result, "interrupted", False)),
        # The front end's notices (ignored fields / options) and the run's; a script's runs may repeat them.
        "notices": list(dict.fromkeys([*req.notices, *(getattr(result, "notices", []) or [])])),
    }
    return json.dumps(info, default=str)
