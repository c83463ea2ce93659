"""txt2img: a validated Txt2ImgRequest in, images with seeds and infotexts out (A1111's txt2img + Hires. fix).

One run, top to bottom: validate -> styles, extra networks, prompts encoded once -> for each batch: seeded
noise (A1111's seeds, as img2img) -> diffusers' text-to-image loop over the same weights, with the engine's
progress / interrupt / prompt-editing callback -> [Hires. fix: latents resized by a latent mode, or decoded,
upscaled and encoded again -> an img2img pass at the target size with fresh noise from the same seeds] ->
decode -> infotext -> save in outputs/txt2img-images/<date>/. The engine's job queue serialises it with every
other job; its batch, decode and callback steps are the engine's own (Engine._sample_batch and friends).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.engine import Engine, GenerationResult, _RunInputs, _Stop, batch_seeds
from pipelines.generation.extra_networks import activate_networks, extract_extra_networks
from pipelines.generation.grids import add_grid
from pipelines.generation.hires import (
    DEFAULT_LATENT_MODE,
    LATENT_UPSCALE_MODES,
    crop_latents,
    upscale_latents,
    upscale_picture,
)
from pipelines.generation.infotext_params import generation_params
from pipelines.generation.noise import batch_noise, resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.queue import SCRIPT
from pipelines.generation.samplers import TIMESTEPS, SamplerChoice, resolve_sampler
from pipelines.generation.schedules import DiscreteSigmas, RunSchedule, a1111_timesteps
from pipelines.generation.txt2img_request import Txt2ImgRequest
from pipelines.io.infotext import build_infotext
from pipelines.io.outputs import dated_output_dir, save_failure_notice, save_image
from pipelines.models.upscalers import resolve_upscaler
from pipelines.models.vae_codec import encode_images

TXT2IMG = "txt2img"  # the job kind in the queue


def txt2img_schedule(sampler: SamplerChoice, model: DiscreteSigmas, steps: int) -> RunSchedule:
    """A1111's txt2img schedule: k-diffusion samplers and LCM run their whole schedule from its first level
    (the img2img rule at strength 1 gives exactly that). A1111's DDIM / PLMS / UniPC start from the noise
    itself at the top timestep and walk every timestep (img2img stops one short of it)."""
    if sampler.spec.kind != TIMESTEPS:
        return sampler.run_schedule(model, steps, 1.0)
    ts = a1111_timesteps(steps)
    start_sigma = float(model.sigmas[ts[-1]])
    if sampler.name == "DDIM":  # calls at timesteps[steps-1] .. timesteps[1], each stepping to the one below
        run = ts[steps - 1:0:-1]
        return RunSchedule(len(run), start_sigma, timesteps=run, stride_steps=steps, vp=True)
    if sampler.name == "PLMS":  # the first step's pseudo improved Euler makes one extra call
        k = steps - 1
        run = ts[k:0:-1] if k < 1 else np.concatenate([[ts[k], ts[k - 1]], ts[k - 1:0:-1]])
        return RunSchedule(len(run), start_sigma, timesteps=run, stride_steps=steps, vp=True)
    # UniPC: time-uniform in continuous time from T = 1 (model time 999) down to 0, `steps` steps
    model_times = np.linspace(len(model.sigmas) - 1, 0, steps + 1)
    return RunSchedule(steps, start_sigma, sigmas=model.vp_sigma(model_times), timesteps=model_times[:-1], vp=True)


def run_txt2img(engine: Engine, request: Txt2ImgRequest, on_progress: ProgressCallback | None = None,
                control: JobControl | None = None) -> GenerationResult:
    """Validate, then run in the engine's queue (inline inside a job that already holds it)."""
    request.validate()
    if request.enable_hr and request.hr_upscaler is not None and not request.latent_upscale:
        try:
            name = resolve_upscaler(request.hr_upscaler, _models_dir(engine)).name
        except RequestError as exc:
            known = ", ".join(LATENT_UPSCALE_MODES)
            raise RequestError("hr_upscaler", f"{exc.message}; or a latent mode: {known}") from None
        request = request.replace(hr_upscaler=name)
    width, height = request.output_size
    engine.limits.check_job("n_iter", width, height, request.batch_size * request.n_iter)
    track = engine.progress_tracker(on_progress)
    with engine.queue.hold(TXT2IMG, control) as job, torch.inference_mode():
        engine.last_update = None
        result = _Txt2ImgRun(engine, request, track, job.control).run()
        if job.kind == SCRIPT:  # A1111's scripts set do_not_save_grid: the script decides
            return result
        grids = request.outdir_grids or Path(engine.outputs_root) / "txt2img-grids"
        return add_grid(result, request, grids)


def _models_dir(engine: Engine) -> Path | None:
    settings = getattr(engine.models, "settings", None)
    return getattr(settings, "models_dir", None)


class _Txt2ImgRun:
    """One run's shared state: the request after styles and networks, model facts, the passes' inputs."""

    def __init__(self, engine: Engine, req: Txt2ImgRequest, on_progress: ProgressCallback, control: JobControl):
        self.engine, self.req, self.on_progress, self.control = engine, req, on_progress, control
        self.models = engine.models
        self.model = self.models.current
        if self.model.components.is_inpainting:
            raise RequestError("sd_model_checkpoint", f"{self.model.info.name} is an inpainting (9-channel) model; "
                               "txt2img needs a regular checkpoint (use the inpaint tab with this one)")
        self.passes = 2 if req.enable_hr else 1
        self.config = self.model.components.scheduler.config
        self.sigmas = DiscreteSigmas.from_scheduler_config(self.config)
        self.started = time.monotonic()

    # 1. The run ----------------------------------------------------------------------------------------
    def run(self) -> GenerationResult:
        req, control = self.req, self.control
        sampler = resolve_sampler(req.sampler_name, req.scheduler)
        hr_prompt, hr_negative = req.hr_prompt or req.prompt, req.hr_negative_prompt or req.negative_prompt
        styled, notices = self.engine._apply_styles(req.as_img2img())
        if req.enable_hr and req.styles and self.engine.styles is not None:  # A1111 styles the hires prompts too
            hr_prompt, hr_negative, _ = self.engine.styles.apply(hr_prompt, hr_negative, req.styles)
        seed, subseed = resolve_seed(req.seed), resolve_seed(req.subseed)
        width, height = req.output_size
        result = GenerationResult(prompt=styled.prompt, negative_prompt=styled.negative_prompt, seed=seed,
                                  subseed=subseed, width=width, height=height)
        result.notices.extend([*req.notices, *notices])
        pipe = self.models.pipeline("txt2img")
        networks = activate_networks(self.models, pipe, styled.prompt, styled.negative_prompt)
        result.notices.extend(networks.notices)
        params = {**self._hires_params(sampler, styled.prompt, styled.negative_prompt, hr_prompt, hr_negative),
                  **styled.extra_generation_params, **networks.params}
        record_req = styled.replace(extra_generation_params=params, denoising_strength=req.denoising_strength)
        first = self._first_pass_inputs(pipe, sampler, seed, styled.replace(prompt=networks.prompt,
                                                                             negative_prompt=networks.negative_prompt))
        self.first_notices = list(networks.notices)
        second = self._second_pass_setup(hr_prompt, hr_negative, seed) if req.enable_hr else None
        result.notices.extend(getattr(self, "hr_notices", []))
        # Different LoRA tags in the hires prompt: each pass puts its own LoRAs on the shared model.
        self.swaps = None
        if second is not None and _lora_tags(hr_prompt) != _lora_tags(styled.prompt):
            self.swaps = ((pipe, styled.prompt, styled.negative_prompt), (second.pipe, hr_prompt, hr_negative))
        for job in range(req.n_iter):
            if control.interrupted:
                result.interrupted = True
                break
            seeds, subseeds = batch_seeds(styled, seed, subseed, job)
            images = self._batch(first, second, job, seeds, subseeds, result)
            if images is None:
                continue
            for image, s, sub in zip(images, seeds, subseeds):
                self._record(result, record_req, sampler, image, s, sub)
            if result.interrupted:
                break
        return result

    def _batch(self, first: _RunInputs, second, job: int, seeds, subseeds, result) -> list[Image.Image] | None:
        """One batch through both passes; None when it was skipped. An interrupt returns the unfinished pass
        decoded as it stands (A1111: an interrupted first pass skips the second)."""
        control = self.control
        control.begin_batch()
        try:
            self._activate(0)
            latents = self._first_pass(first, job, seeds, subseeds)
            if second is None:
                return self.engine._decode(first.pipe, latents, result.notices)
            if control.interrupted:
                raise _Stop(latents)
            self._activate(1)
            return self._second_pass(second, latents, job, seeds, subseeds, result.notices)
        except _Stop as stop:
            if not control.interrupted:
                result.skipped_batches += 1
                return None
            result.interrupted = True
            return [] if stop.latents is None else self.engine._decode(first.pipe, stop.latents, result.notices)
        finally:
            control.end_batch()

    def _activate(self, pass_index: int) -> None:
        if self.swaps is not None:
            activate_networks(self.models, *self.swaps[pass_index])

    # 2. First pass: text to latents -------------------------------------------------------------------------
    def _first_pass_inputs(self, pipe: Any, sampler: SamplerChoice, seed: int, req) -> _RunInputs:
        schedule = txt2img_schedule(sampler, self.sigmas, req.steps)
        pipe.scheduler = sampler.make_scheduler(self.config, seed, schedule)
        conditioning = self.engine.encode_prompts(pipe, req.prompt, req.negative_prompt, max(schedule.steps, 1),
                                                  req.clip_skip, req.emphasis, size=(req.width, req.height))
        positive, negative = conditioning.pair(0)
        progress_req = req.replace(n_iter=req.n_iter * self.passes)  # the callback reports job / job_count
        inputs = _RunInputs(progress_req, pipe, torch.empty(0), positive, negative, [], None, None,
                            schedule=schedule, conditioning=conditioning)
        self.pure_noise = sampler.spec.kind == TIMESTEPS  # A1111's DDIM/PLMS/UniPC start at the noise itself
        return inputs

    def _first_pass(self, inputs: _RunInputs, job: int, seeds, subseeds) -> torch.Tensor:
        req, pipe, schedule = self.req, inputs.pipe, inputs.schedule
        shape = (pipe.unet.config.in_channels, req.height // 8, req.width // 8)
        device, dtype = pipe._execution_device, pipe.unet.dtype
        drawn = batch_noise(shape, seeds, subseeds, req.subseed_strength, req.randn_source, device,
                            req.eta_noise_seed_delta)
        noise = drawn.noise.to(device=device, dtype=dtype)
        progress = (job * self.passes, self.started, self.on_progress, self.control)
        if schedule.steps == 0:  # A1111's DDIM/PLMS at one step: no call, the noise is the result
            return noise
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            pipe.scheduler.noise_sampler_seed = list(seeds)
        with pipe.noise(noise, pure=self.pure_noise):
            out = pipe(prompt_embeds=inputs.prompt_embeds, negative_prompt_embeds=inputs.negative_embeds,
                       height=req.height, width=req.width, num_inference_steps=schedule.steps,
                       guidance_scale=req.cfg_scale, generator=drawn.generators, output_type="latent",
                       num_images_per_prompt=len(seeds),
                       callback_on_step_end=self.engine._step_callback(inputs, None, None, *progress),
                       callback_on_step_end_tensor_inputs=["latents"],
                       **inputs.conditioning.added_kwargs())  # SDXL: pooled and size conditioning
        return out.images

    # 3. Hires. fix: an img2img pass over the first pass made bigger --------------------------------------
    def _second_pass_setup(self, prompt: str, negative_prompt: str, seed: int) -> _RunInputs:
        req = self.req
        sampler = resolve_sampler(req.hr_sampler_name or req.sampler_name, req.hr_scheduler or req.scheduler)
        steps = req.hr_second_pass_steps or req.steps
        schedule = sampler.run_schedule(self.sigmas, steps, req.denoising_strength)
        pipe = self.models.pipeline("img2img")
        pipe.scheduler = sampler.make_scheduler(self.config, seed, schedule)
        networks = activate_networks(self.models, pipe, prompt, negative_prompt)
        self.hr_notices = [n for n in networks.notices if n not in self.first_notices]
        target = req.hires_target  # SDXL's size conditioning: the second pass's size, as A1111's hr_c
        conditioning = self.engine.encode_prompts(pipe, networks.prompt, networks.negative_prompt,
                                                  max(schedule.steps, 1), req.clip_skip, req.emphasis,
                                                  size=(target.width // 8 * 8, target.height // 8 * 8))
        positive, negative = conditioning.pair(0)
        target = req.hires_target
        hr_req = req.as_img2img(width=target.width // 8 * 8, height=target.height // 8 * 8, steps=steps,
                                sampler_name=sampler.name, scheduler=sampler.schedule,
                                denoising_strength=req.denoising_strength, n_iter=req.n_iter * self.passes)
        return _RunInputs(hr_req, pipe, torch.empty(0), positive, negative, [], None, None,
                          schedule=schedule, conditioning=conditioning)

    def _second_pass(self, inputs: _RunInputs, latents: torch.Tensor, job: int, seeds, subseeds,
                     notices: list[str]) -> list[Image.Image]:
        req, pipe = self.req, inputs.pipe
        target = req.hires_target
        if req.latent_upscale:
            start = upscale_latents(latents, req.hr_upscaler or DEFAULT_LATENT_MODE, target)
        else:
            pictures = self.engine._decode(pipe, latents, notices)
            owner = getattr(self.models, "upscalers", None)
            pictures = [upscale_picture(p, req.hr_upscaler, target.upscale_x, target.upscale_y,
                                        _models_dir(self.engine), owner) for p in pictures]
            start = torch.cat([encode_images(pipe.vae, [p], pipe._execution_device) for p in pictures])
        start = crop_latents(start, target).to(device=pipe._execution_device, dtype=pipe.unet.dtype)
        inputs.init_latents = start
        inputs.notices = notices
        progress = (job * self.passes + 1, self.started, self.on_progress, self.control)
        return self.engine._sample_batch(inputs, seeds, subseeds, progress)

    def _hires_params(self, sampler: SamplerChoice, prompt: str, negative: str, hr_prompt: str,
                      hr_negative: str) -> dict[str, Any]:
        """A1111's Hires. fix infotext keys, in the order its txt2img init adds them."""
        req = self.req
        if not req.enable_hr:
            return {}
        hr_sampler = resolve_sampler(req.hr_sampler_name or req.sampler_name, req.hr_scheduler or req.scheduler)
        resize = bool(req.hr_resize_x or req.hr_resize_y)
        hr_schedule = hr_sampler.infotext_schedule
        return {
            "Hires sampler": hr_sampler.name if req.hr_sampler_name and hr_sampler.name != sampler.name else None,
            "Hires prompt": hr_prompt if hr_prompt != prompt else None,
            "Hires negative prompt": hr_negative if hr_negative != negative else None,
            # A1111 names the second pass's schedule only when it computed one, different from the first's
            "Hires schedule type": hr_schedule if hr_schedule not in ("Automatic", sampler.infotext_schedule) else None,
            "Hires upscale": None if resize else req.hr_scale,
            "Hires resize": f"{req.hr_resize_x}x{req.hr_resize_y}" if resize else None,
            "Hires steps": req.hr_second_pass_steps or None,
            "Hires upscaler": req.hr_upscaler,
        }

    # 4. Infotext and saving ------------------------------------------------------------------------------
    def _record(self, result: GenerationResult, req, sampler: SamplerChoice, image: Image.Image, seed: int,
                subseed: int) -> None:
        params = generation_params(req, sampler, self.model, seed, subseed)
        # A1111's txt2img writes "Denoising strength" only with Hires. fix (at its usual place in the line).
        params["Denoising strength"] = req.denoising_strength if self.req.enable_hr else None
        infotext = build_infotext(req.prompt, req.negative_prompt, params)
        result.images.append(image)
        result.seeds.append(seed)
        result.subseeds.append(subseed)
        result.infotexts.append(infotext)
        if not self.req.save_images:
            return
        folder = self.req.outdir_samples or Path(self.engine.outputs_root) / "txt2img-images"
        try:
            result.paths.append(save_image(image, infotext, dated_output_dir(folder.parent, folder.name), seed,
                                           self.req.samples_format, quality=self.req.jpeg_quality))
        except OSError as exc:  # disk full, folder gone...: the finished image is still returned
            notice = save_failure_notice(exc, folder)
            if notice not in result.notices:
                result.notices.append(notice)


def _lora_tags(prompt: str) -> list:
    return extract_extra_networks(prompt)[1]
