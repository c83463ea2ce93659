"""The img2img engine: a validated request in, images with seeds and infotexts out.

One run, top to bottom: validate -> pick sampler and pipeline -> prepare the init image (resize mode, or
the inpaint plan: mask, only-masked crop, fill) -> encode it and the prompts once -> for each batch:
seeded noise, masked content, diffusers' sampling loop with a progress/cancel/blend callback ->
composite -> infotext -> save. Runs are serialised through the job queue (queue.py) that every front end
shares: one job at a time on the model.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image

from pipelines.fields import ResizeMode
from pipelines.generation.conditioning import PromptConditioning, encode_conditioning
from pipelines.generation.extra_networks import activate_networks
from pipelines.generation.grids import add_grid
from pipelines.generation.infotext_params import generation_params
from pipelines.generation.inpaint_prep import (
    InpaintPlan,
    NothingToInpaint,
    apply_masked_content,
    finish_inpaint,
    latent_mask,
    plan_inpaint,
)
from pipelines.generation.latent_preview import latent_preview
from pipelines.generation.noise import batch_noise, resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback, ProgressUpdate
from pipelines.generation.queue import IMG2IMG, SCRIPT, SWITCH, Job, JobQueue
from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SamplerChoice, resolve_sampler
from pipelines.generation.schedules import DiscreteSigmas, RunSchedule
from pipelines.generation.sdxl_conditioning import encode_sdxl_conditioning
from pipelines.images import image_ops
from pipelines.images.color_correction import apply_color_correction, color_reference
from pipelines.io.infotext import build_infotext
from pipelines.io.outputs import dated_output_dir, save_failure_notice, save_image
from pipelines.io.styles import StyleDatabase
from pipelines.limits import Limits, latent_upscale_source
from pipelines.models.embeddings import embedding_token_lengths
from pipelines.models.families import ModelFamily
from pipelines.models.model_manager import ModelManager
from pipelines.models.vae_codec import decode_latents, encode_images, images_from_pixels
from pipelines.options import color_rgb


@dataclass
class GenerationResult:
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0  # the first seed of the run (after resolving -1)
    subseed: int = 0
    width: int = 0
    height: int = 0
    interrupted: bool = False
    skipped_batches: int = 0
    notices: list[str] = field(default_factory=list)  # things the user should know, e.g. a fallback taken
    index_of_first_image: int = 0  # 1 when a grid leads images/infotexts (grids.py); seeds never hold one
    grid_path: Path | None = None  # where the grid was saved


@dataclass
class _RunInputs:
    """What every batch of one run shares."""

    req: Img2ImgRequest
    pipe: Any
    init_latents: torch.Tensor  # (1 or batch, 4, h/8, w/8), scaled
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor
    images: list[Image.Image]  # the prepared init pictures (one, or one per batch item)
    plan: InpaintPlan | None  # None for plain img2img
    mask: torch.Tensor | None  # latent-size mask (1, 1, h, w): binary, or soft for soft inpainting
    notices: list[str] = field(default_factory=list)  # the run's notices (GenerationResult.notices)
    schedule: RunSchedule | None = None  # A1111's steps and noise levels for this run
    conditioning: PromptConditioning | None = None  # both prompts' schedules (prompt editing), encoded once


class _Stop(Exception):
    """Raised from the step callback to leave diffusers' loop at once (interrupt or skip), carrying the
    latents as they stand (what an interrupt returns)."""

    def __init__(self, latents: torch.Tensor | None = None):
        super().__init__()
        self.latents = latents


class Engine:
    def __init__(self, models: ModelManager, outputs_root: Path, preview_every: int = 5,
                 queue: JobQueue | None = None, limits: Limits | None = None):
        self.models = models
        # The request limits (pixels in and out): the launch flags' unless given.
        self.limits = limits or Limits.from_settings(getattr(models, "settings", None))
        self.outputs_root = outputs_root
        self.preview_every = preview_every
        # Saved styles (styles.csv in the data dir): a request's `styles` are applied when its run starts.
        settings = getattr(models, "settings", None)
        self.styles = StyleDatabase(settings.styles_path) if settings is not None else None
        # The one job queue (UI, API, scripts, model switches): front ends reach it as engine.queue.
        self.queue = queue or JobQueue()
        self.last_update: ProgressUpdate | None = None  # the latest run's latest progress, for polling

    def img2img(self, request: Img2ImgRequest, on_progress: ProgressCallback | None = None,
                control: JobControl | None = None) -> GenerationResult:
        request.validate()
        self.limits.check_request(request)
        track = self.progress_tracker(on_progress)
        # Inside a script's (or an API override's) job this runs inline, with that job's control.
        with self.queue.hold(IMG2IMG, control) as job, torch.inference_mode():
            self.last_update = None
            result = self._run(request, track, job.control)
            # A1111's scripts set do_not_save_grid: a run inside a script's job gets none (the script decides).
            if job.kind == SCRIPT:
                return result
            return add_grid(result, request, request.outdir_grids or Path(self.outputs_root) / "img2img-grids")

    def progress_tracker(self, on_progress: ProgressCallback | None) -> ProgressCallback:
        """A run's progress callback: kept for polling (last_update), told to the queue, then the caller's."""
        report = on_progress or (lambda update: None)

        def track(update: ProgressUpdate) -> None:
            self.last_update = update
            self.queue.report(update)
            report(update)
        return track

    def txt2img(self, request: Any, on_progress: ProgressCallback | None = None,
                control: JobControl | None = None) -> GenerationResult:
        """A Txt2ImgRequest's run (pipelines/generation/txt2img.py), in the same queue over the same weights."""
        from pipelines.generation.txt2img import run_txt2img  # local: txt2img builds on this module

        return run_txt2img(self, request, on_progress, control)

    @contextmanager
    def job(self, control: JobControl | None = None, kind: str = SCRIPT) -> Iterator[JobControl]:
        """Hold the model for a whole job, e.g. a script's many img2img calls: no other job slips in
        between, and interrupt()/skip() reach its control the whole time. Nested calls keep the outermost
        job's control."""
        with self.queue.hold(kind, control) as job:
            yield job.control

    @contextmanager
    def exclusive(self, kind: str = SWITCH) -> Iterator[Job]:
        """Hold the model while something else uses it (a checkpoint switch waits for a running job)."""
        with self.queue.hold(kind) as job:
            yield job

    @property
    def busy(self) -> bool:
        return self.queue.running is not None

    def interrupt(self, job_id: str | None = None) -> Job | None:
        """Stop the running job now (from any thread or connection); finished images are kept. A job_id
        that is not the running job raises JobNotRunning: a queued job is never armed."""
        return self.queue.interrupt(job_id)

    def skip(self, job_id: str | None = None) -> Job | None:
        """Drop the running job's current batch and go on with the next (a no-op between batches)."""
        return self.queue.skip(job_id)

    # 1. One run --------------------------------------------------------------------------------------
    def _run(self, req: Img2ImgRequest, on_progress: ProgressCallback, control: JobControl) -> GenerationResult:
        sampler = resolve_sampler(req.sampler_name, req.scheduler)
        model = self.models.current
        nine_channel = model.components.is_inpainting
        pipe = self.models.pipeline("inpaint" if nine_channel else "img2img")
        seed, subseed = resolve_seed(req.seed), resolve_seed(req.subseed)
        # A1111's schedule, computed from the model's own noise levels; the scheduler runs exactly it.
        config = model.components.scheduler.config
        schedule = sampler.run_schedule(DiscreteSigmas.from_scheduler_config(config), req.steps,
                                        req.denoising_strength, req.img2img_fix_steps)
        pipe.scheduler = sampler.make_scheduler(config, seed, schedule)
        req, style_notices = self._apply_styles(req)
        result = GenerationResult(prompt=req.prompt, negative_prompt=req.negative_prompt, seed=seed,
                                  subseed=subseed, width=req.width, height=req.height)
        result.notices.extend(req.notices)  # what the front end could not apply
        result.notices.extend(style_notices)
        # <lora:...> tags out of the text (their adapters on the model), embedding names as their tokens; the
        # infotext keeps the prompt as written and gains "Lora hashes" / "TI hashes".
        networks = activate_networks(self.models, pipe, req.prompt, req.negative_prompt)
        result.notices.extend(networks.notices)
        req = req.replace(extra_generation_params={**req.extra_generation_params, **networks.params})
        encoded = req.replace(prompt=networks.prompt, negative_prompt=networks.negative_prompt)
        try:
            inputs = self._prepare(encoded, pipe, result.notices, schedule.steps)
        except NothingToInpaint as empty:
            return self._unchanged(req, sampler, model, result, empty.message)
        inputs.notices, inputs.schedule = result.notices, schedule
        # A1111 matches colours to the picture as it went in, before the sampler touched it.
        colors = None
        if req.color_correction:
            references = [req.color_reference_image] if req.color_reference_image is not None else inputs.images
            background = color_rgb(req.background_color)  # the colour the init picture was flattened onto
            colors = [color_reference(image_ops.flatten_onto(image, background)) for image in references]
        started = time.monotonic()
        for job in range(req.n_iter):
            if control.interrupted:
                result.interrupted = True
                break
            seeds, subseeds = batch_seeds(req, seed, subseed, job)
            # A Skip counts only while this batch samples: one pressed during its decode or before the next
            # batch expires with it instead of dropping the next batch.
            control.begin_batch()
            try:
                images = self._sample_batch(inputs, seeds, subseeds, (job, started, on_progress, control))
            except _Stop as stop:
                if not control.interrupted:
                    result.skipped_batches += 1
                    continue
                # Interrupted: as A1111, the unfinished batch comes back decoded as it stands, with its
                # infotext (clients show it), and the run ends.
                result.interrupted = True
                images = self._decode(pipe, stop.latents, result.notices) if stop.latents is not None else []
            finally:
                control.end_batch()
            for item, (image, s, sub) in enumerate(zip(images, seeds, subseeds)):
                if colors is not None:  # each batch item matches its own init picture
                    image = apply_color_correction(colors[item % len(colors)], image)
                if inputs.plan is not None:
                    image = finish_inpaint(inputs.plan, image)
                self._record(result, req, sampler, model, image, s, sub)
            if result.interrupted:
                break
        return result

    def _apply_styles(self, req: Img2ImgRequest) -> tuple[Img2ImgRequest, list[str]]:
        """The request with its saved styles merged into the prompts (A1111 applies them as a run starts)."""
        if not req.styles:
            return req, []
        if self.styles is None:
            return req, [f"styles {list(req.styles)!r}: this engine has no styles file; ignored"]
        prompt, negative_prompt, notices = self.styles.apply(req.prompt, req.negative_prompt, req.styles)
        return req.replace(prompt=prompt, negative_prompt=negative_prompt), notices

    # 2. Inputs shared by every batch ---------------------------------------------------------------------
    def _prepare(self, req: Img2ImgRequest, pipe: Any, notices: list[str], steps: int) -> _RunInputs:
        plan = plan_inpaint(req) if req.mask is not None else None
        if plan is not None:
            images = [plan.image]
        else:
            sources = list(req.batch_images) or [req.init_image]
            images = [self._resized_init_image(req, image, notices) for image in sources]
        device = pipe._execution_device
        latents = torch.cat([encode_images(pipe.vae, [image], device) for image in images])
        if req.resize_mode is ResizeMode.LATENT_UPSCALE and plan is None:
            latents = image_ops.upscale_latent(latents, req.width, req.height)
        # From here on everything the sampler touches is in the UNet's dtype, on its device: init latents come
        # out of the VAE in its own dtype (fp32 under --no-half-vae), masks and noise start as CPU float32.
        latents = latents.to(device=device, dtype=pipe.unet.dtype)
        mask = None
        if plan is not None:
            mask = latent_mask(plan.mask, latents.shape[2], latents.shape[3], soft=req.soft_inpainting)
            mask = mask.to(device=device, dtype=latents.dtype)
        # The prompt language (emphasis, BREAK, prompt editing) over the steps this run samples; step 0's pair
        # goes to diffusers, the step callback switches to later ones.
        # An embedding's vectors stay in one chunk, as A1111 keeps them.
        conditioning = self.encode_prompts(pipe, req.prompt, req.negative_prompt, steps, req.clip_skip, req.emphasis,
                                           size=(req.width, req.height))
        prompt_embeds, negative_embeds = conditioning.pair(0)
        return _RunInputs(req, pipe, latents, prompt_embeds, negative_embeds, images, plan, mask,
                          conditioning=conditioning)

    def encode_prompts(self, pipe: Any, prompt: str, negative_prompt: str, steps: int, clip_skip: int = 1,
                       emphasis: str = "Original", size: tuple[int, int] | None = None) -> PromptConditioning:
        """Both prompts' schedules over `steps` through the pipe's text encoder (img2img and txt2img share it).
        Clip skip applies where A1111 applies it (SD 1.x; families.py); the infotext keeps the requested value."""
        if not self.models.current.components.family.honours_clip_skip:
            clip_skip = 1
        if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL: two encoders, pooled + size (width, height)
            return encode_sdxl_conditioning(pipe, prompt, negative_prompt, steps, pipe._execution_device, emphasis,
                                            embedding_token_lengths(pipe.tokenizer), size)
        return encode_conditioning(pipe.tokenizer, pipe.text_encoder, prompt, negative_prompt, steps,
                                   pipe._execution_device, clip_skip, emphasis,
                                   embedding_token_lengths(pipe.tokenizer))

    @staticmethod
    def _resized_init_image(req: Img2ImgRequest, image: Image.Image, notices: list[str] | None = None) -> Image.Image:
        image = image_ops.flatten_onto(image, color_rgb(req.background_color))
        if req.resize_mode is ResizeMode.LATENT_UPSCALE:  # encoded at source size, then the latent is scaled
            image, notice = latent_upscale_source(image, req.width, req.height)  # (bounded: pipelines/limits.py)
            if notice and notices is not None and notice not in notices:
                notices.append(notice)
            return image_ops.snap_to_multiple_of_8(image)
        return image_ops.resize_image(image, req.resize_mode, req.width, req.height)

    # 3. One batch through diffusers ----------------------------------------------------------------------
    def _sample_batch(self, inputs: _RunInputs, seeds, subseeds, progress) -> list[Image.Image]:
        req, pipe = inputs.req, inputs.pipe
        shape = tuple(inputs.init_latents.shape[1:])
        latents = inputs.init_latents
        # Noise is drawn in float32 from the request's source (A1111's randn_source), one generator per image,
        # then takes the latents' dtype and device like everything else that meets them.
        drawn = batch_noise(shape, seeds, subseeds, req.subseed_strength, req.randn_source, latents.device,
                            req.eta_noise_seed_delta)
        noise = drawn.noise.to(device=latents.device, dtype=latents.dtype)
        start = latents.expand(len(seeds), *shape)
        if inputs.mask is not None:
            start = apply_masked_content(start, inputs.mask.round(), req.masked_content, noise)
        if req.initial_noise_multiplier != 1.0:  # A1111 scales the sampler's noise only, not the latent-noise fill
            noise = noise * req.initial_noise_multiplier
        schedule = inputs.schedule
        if schedule.steps == 0:  # A1111 returns the noised start (DDIM/PLMS at t_enc < 2, fix steps at strength 0)
            job, started, on_progress, _control = progress  # no sampling step: report the batch done anyway
            on_progress(ProgressUpdate(job=job, job_count=req.n_iter, step=1, steps=1,
                                       elapsed=time.monotonic() - started, text="no sampling step (steps x "
                                       "denoising strength < 1): the noised init picture"))
            sigma = schedule.start_sigma
            noised = (start + noise * sigma) / ((1 + sigma ** 2) ** 0.5 if schedule.vp else 1.0)
            return self._decode(pipe, noised, inputs.notices)
        # DPM++ SDE draws its Brownian noise from a tree per image, seeded with that image's seed (A1111 passes
        # the batch's seeds), so image i equals a single run at seed i.
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            pipe.scheduler.noise_sampler_seed = list(seeds)
        # Each image's own generator keeps drawing its ancestral/SDE step noise (after its initial noise, or
        # reseeded with seed + ENSD), so image i depends only on seed+i, whatever the batch size.
        generators = drawn.generators
        common = dict(prompt_embeds=inputs.prompt_embeds, negative_prompt_embeds=inputs.negative_embeds,
                      strength=1.0, num_inference_steps=schedule.steps,  # the scheduler's whole (A1111) schedule
                      guidance_scale=req.cfg_scale, generator=generators, output_type="latent",
                      callback_on_step_end=self._step_callback(inputs, start, noise, *progress),
                      callback_on_step_end_tensor_inputs=["latents"],
                      **(inputs.conditioning.added_kwargs() if inputs.conditioning is not None else {}))
        if pipe.unet.config.in_channels == 9:
            # 9-channel inpainting UNets always take mask + masked-image conditioning; plain img2img on one
            # is an inpaint of the whole picture (an all-white mask), as in A1111.
            white = Image.new("L", (req.width, req.height), 255)
            mask_image = inputs.plan.mask if inputs.plan is not None else white
            image = inputs.images if len(inputs.images) > 1 else inputs.images[0]
            with pipe.noise(noise, start, req.inpainting_mask_weight):
                out = pipe(image=image, mask_image=mask_image, height=req.height, width=req.width,
                           num_images_per_prompt=len(seeds), **common)
        else:
            with pipe.noise(noise):
                out = pipe(image=start, num_images_per_prompt=len(seeds), **common)
        return self._decode(pipe, out.images, inputs.notices)

    def _step_callback(self, inputs: _RunInputs, start, noise, job, started, on_progress, control):
        req = inputs.req
        blend = self._blend_mask_for_step if inputs.mask is not None else None
        sdxl = self.models.current.components.family is ModelFamily.SDXL  # its latents need their own colour map

        def callback(pipe, step_index, timestep, tensors):
            if control.interrupted:
                raise _Stop(tensors["latents"])
            if control.take_skip():
                raise _Stop()
            step, steps = step_index + 1, pipe.num_timesteps
            latents = tensors["latents"]
            changed = {}
            if blend is not None:
                keep = blend(inputs, pipe, step, steps)
                if keep is not None:
                    # Outside the mask the picture follows the original, noised to the next step's level.
                    timesteps = pipe.scheduler.timesteps[-steps:]
                    original = start if step == steps else pipe.scheduler.add_noise(
                        start, noise, timesteps[step:step + 1])
                    keep, original = keep.to(latents), original.to(latents)  # fp32 here would promote latents
                    latents = keep * latents + (1 - keep) * original
                    changed = {"latents": latents}
            if self.preview_every > 0 and step % self.preview_every == 0:
                preview = latent_preview(latents, sdxl)
            else:
                preview = None
            on_progress(ProgressUpdate(job=job, job_count=req.n_iter, step=step, steps=steps,
                                       elapsed=time.monotonic() - started, preview=preview))
            changed.update(self._next_prompt_embeds(inputs.conditioning, pipe, step_index, latents.shape[0]))
            return changed
        return callback

    @staticmethod
    def _next_prompt_embeds(conditioning: PromptConditioning | None, pipe: Any, call: int,
                            batch: int) -> dict[str, torch.Tensor]:
        """The pipeline's prompt_embeds (SDXL: and pooled add_text_embeds) for UNet call `call` + 1 when prompt
        editing changes them there; {} when nothing changes."""
        calls = pipe.num_timesteps
        if conditioning is None or not conditioning.varies or call + 1 >= calls:
            return {}
        now, after = (conditioning.step_for_call(c, calls) for c in (call, call + 1))
        if conditioning.pair(now) is conditioning.pair(after):
            return {}
        return conditioning.step_tensors(after, batch, pipe.do_classifier_free_guidance)

    @staticmethod
    def _blend_mask_for_step(inputs: _RunInputs, pipe: Any, step: int, steps: int) -> torch.Tensor | None:
        """Where the sampler's latents are kept after `step` (1 = keep, 0 = take the noised original).

        Regular 4-channel models blend the original back outside the mask at every step (A1111, diffusers);
        9-channel models are conditioned on the mask instead. Soft inpainting (differential diffusion) lets a
        pixel with mask value v change only during the last v fraction of the steps, so edges fade in.
        """
        mask = inputs.mask
        if inputs.req.soft_inpainting:
            return (mask > 1 - step / steps).to(mask.dtype)
        return None if pipe.unet.config.in_channels == 9 else mask

    @staticmethod
    def _decode(pipe: Any, latents: torch.Tensor, notices: list[str]) -> list[Image.Image]:
        return images_from_pixels(decode_latents(pipe.vae, latents, notices))

    # 4. Infotext and saving ---------------------------------------------------------------------------
    def _record(self, result, req, sampler: SamplerChoice, model, image, seed, subseed) -> None:
        infotext = build_infotext(req.prompt, req.negative_prompt,
                                  generation_params(req, sampler, model, seed, subseed))
        result.images.append(image)
        result.seeds.append(seed)
        result.subseeds.append(subseed)
        result.infotexts.append(infotext)
        if req.save_images:
            folder = req.outdir_samples or Path(self.outputs_root) / "img2img-images"
            try:
                result.paths.append(save_image(image, infotext, dated_output_dir(folder.parent, folder.name),
                                               seed, req.samples_format, quality=req.jpeg_quality))
            except OSError as exc:  # disk full, folder gone...: the finished image is still returned
                notice = save_failure_notice(exc, folder)
                if notice not in result.notices:
                    result.notices.append(notice)

    def _unchanged(self, req: Img2ImgRequest, sampler: SamplerChoice, model, result: GenerationResult,
                   reason: str) -> GenerationResult:
        """A mask that selects nothing: A1111 composites the original back over every pixel, so every image
        of the run is the init picture at the output size. Said in a notice, without sampling."""
        mode = ResizeMode.JUST_RESIZE if req.resize_mode is ResizeMode.LATENT_UPSCALE else req.resize_mode
        picture = image_ops.flatten_onto(req.init_image, color_rgb(req.background_color))
        picture = image_ops.resize_image(picture, mode, req.width, req.height)
        result.notices.append(f"{reason}: the init picture is returned unchanged")
        for job in range(req.n_iter):
            for s, sub in zip(*batch_seeds(req, result.seed, result.subseed, job)):
                self._record(result, req, sampler, model, picture.copy(), s, sub)
        return result


def batch_seeds(req: Img2ImgRequest, seed: int, subseed: int, job: int) -> tuple[list[int], list[int]]:
    """Seeds and variation seeds of batch `job` (A1111 process_images): image i of the run gets seed + i and
    subseed + i; with a variation strength > 0 every image keeps the seed and only the subseed steps."""
    first = job * req.batch_size
    offsets = range(first, first + req.batch_size)
    steps_seed = req.subseed_strength == 0
    return [seed + i if steps_seed else seed for i in offsets], [subseed + i for i in offsets]
