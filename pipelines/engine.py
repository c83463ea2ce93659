"""The img2img engine: a validated request in, images with seeds and infotexts out.

One run, top to bottom: validate -> pick sampler -> prepare the init image (resize mode) -> encode it
and the prompts once -> for each batch: seeded noise, diffusers' sampling loop with a progress/cancel
callback -> infotext -> save. Runs are serialised: one job at a time on the model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines import image_ops
from pipelines.infotext import build_infotext
from pipelines.latent_preview import latent_preview
from pipelines.model_manager import ModelManager
from pipelines.noise import initial_noise, resolve_seed
from pipelines.outputs import dated_output_dir, save_image
from pipelines.progress import JobControl, ProgressCallback, ProgressUpdate
from pipelines.prompt_encoding import encode_prompts
from pipelines.requests import Img2ImgRequest, ResizeMode
from pipelines.samplers import SamplerChoice, resolve_sampler

VERSION = "img2img-studio 0.1.0"


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


class _Stop(Exception):
    """Raised from the step callback to leave diffusers' loop at once (interrupt or skip)."""


class Engine:
    def __init__(self, models: ModelManager, outputs_root: Path, preview_every: int = 5):
        self.models = models
        self.outputs_root = outputs_root
        self.preview_every = preview_every
        self._run_lock = threading.Lock()  # one job on the model at a time (UI and API share it)
        self._active: JobControl | None = None
        self.last_update: ProgressUpdate | None = None  # the running job's latest progress, for polling

    def img2img(self, request: Img2ImgRequest, on_progress: ProgressCallback | None = None,
                control: JobControl | None = None) -> GenerationResult:
        request.validate()
        control = control or JobControl()
        report = on_progress or (lambda update: None)

        def track(update: ProgressUpdate) -> None:
            self.last_update = update
            report(update)

        with self._run_lock, torch.inference_mode():
            self._active, self.last_update = control, None
            try:
                return self._run(request, track, control)
            finally:
                self._active = None

    @property
    def busy(self) -> bool:
        return self._active is not None

    def interrupt(self) -> None:
        """Stop the running job now (from any thread or connection); finished images are kept."""
        if self._active is not None:
            self._active.interrupt()

    def skip(self) -> None:
        """Drop the running job's current batch and go on with the next."""
        if self._active is not None:
            self._active.skip()

    # 1. One run --------------------------------------------------------------------------------------
    def _run(self, req: Img2ImgRequest, on_progress: ProgressCallback, control: JobControl) -> GenerationResult:
        sampler = resolve_sampler(req.sampler_name, req.scheduler)
        model = self.models.current
        pipe = self.models.pipeline("img2img")
        device = pipe._execution_device
        seed = resolve_seed(req.seed)
        subseed = resolve_seed(req.subseed)
        pipe.scheduler = sampler.make_scheduler(model.components.scheduler.config, seed)
        result = GenerationResult(prompt=req.prompt, negative_prompt=req.negative_prompt, seed=seed,
                                  subseed=subseed, width=req.width, height=req.height)
        init_latents = self._encode_init_image(pipe, req)
        prompt_embeds, negative_embeds = encode_prompts(
            pipe.tokenizer, pipe.text_encoder, req.prompt, req.negative_prompt, device)
        started = time.monotonic()

        for job in range(req.n_iter):
            if control.interrupted:
                result.interrupted = True
                break
            seeds = [seed + job * req.batch_size + i for i in range(req.batch_size)]
            subseeds = [subseed + job * req.batch_size + i for i in range(req.batch_size)]
            try:
                images = self._sample_batch(pipe, req, init_latents, prompt_embeds, negative_embeds, seeds,
                                            subseeds, progress=(job, started, on_progress, control))
            except _Stop:
                if control.interrupted:
                    result.interrupted = True
                    break
                result.skipped_batches += 1
                continue
            for image, s, sub in zip(images, seeds, subseeds):
                self._record(result, req, sampler, model, image, s, sub)
        return result

    # 2. Init image -> latents (resize mode applied) ------------------------------------------------------
    def _encode_init_image(self, pipe: Any, req: Img2ImgRequest) -> torch.Tensor:
        image = image_ops.flatten_onto_white(req.init_image)
        if req.resize_mode is ResizeMode.LATENT_UPSCALE:
            image = image_ops.snap_to_multiple_of_8(image)
        else:
            image = image_ops.resize_image(image, req.resize_mode, req.width, req.height)
        latents = self._vae_encode(pipe, image)
        if req.resize_mode is ResizeMode.LATENT_UPSCALE:
            latents = image_ops.upscale_latent(latents, req.width, req.height)
        return latents

    @staticmethod
    def _vae_encode(pipe: Any, image: Image.Image) -> torch.Tensor:
        vae = pipe.vae
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        pixels = pixels.to(device=pipe._execution_device, dtype=vae.dtype)
        # The distribution's mode, not a sample: the init latent must not depend on the seed's RNG stream.
        latents = vae.encode(pixels).latent_dist.mode()
        return latents * vae.config.scaling_factor

    # 3. One batch through diffusers ----------------------------------------------------------------------
    def _sample_batch(self, pipe, req, init_latents, prompt_embeds, negative_embeds, seeds, subseeds,
                      progress) -> list[Image.Image]:
        shape = tuple(init_latents.shape[1:])
        noise = torch.stack([initial_noise(shape, s, sub, req.subseed_strength) for s, sub in zip(seeds, subseeds)])
        # Each image's own generator keeps drawing its ancestral/SDE step noise, so image i depends only
        # on seed+i, whatever the batch size.
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if int(req.steps * min(req.denoising_strength, 0.999)) < 1:  # nothing to denoise: decode the init latents
            return self._decode(pipe, init_latents.expand(len(seeds), *shape))
        callback = self._step_callback(req, *progress)
        with pipe.noise(noise):
            out = pipe(
                prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, image=init_latents,
                strength=min(req.denoising_strength, 0.999),
                num_inference_steps=req.steps, guidance_scale=req.cfg_scale,
                num_images_per_prompt=len(seeds), generator=generators,
                callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"],
            )
        return out.images

    def _step_callback(self, req, job, started, on_progress, control):
        def callback(pipe, step_index, timestep, tensors):
            if control.interrupted or control.take_skip():
                raise _Stop()
            step = step_index + 1
            show = self.preview_every > 0 and (step % self.preview_every == 0)
            on_progress(ProgressUpdate(
                job=job, job_count=req.n_iter, step=step, steps=pipe.num_timesteps,
                elapsed=time.monotonic() - started,
                preview=latent_preview(tensors["latents"]) if show else None))
            return {}
        return callback

    @staticmethod
    def _decode(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
        vae = pipe.vae
        decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        return pipe.image_processor.postprocess(decoded, output_type="pil")

    # 4. Infotext and saving ---------------------------------------------------------------------------
    def _record(self, result, req, sampler: SamplerChoice, model, image, seed, subseed) -> None:
        infotext = build_infotext(req.prompt, req.negative_prompt,
                                  generation_params(req, sampler, model, seed, subseed))
        result.images.append(image)
        result.seeds.append(seed)
        result.subseeds.append(subseed)
        result.infotexts.append(infotext)
        if req.save_images:
            result.paths.append(save_image(image, infotext, dated_output_dir(self.outputs_root), seed))


def generation_params(req: Img2ImgRequest, sampler: SamplerChoice, model, seed: int, subseed: int) -> dict[str, Any]:
    """The infotext's key: value pairs in A1111's order; defaults that A1111 omits are left out."""
    info = model.info
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": sampler.name,
        "Schedule type": None if sampler.schedule == "Automatic" else sampler.schedule,
        "CFG scale": req.cfg_scale,
        "Seed": seed,
        "Size": f"{req.width}x{req.height}",
        "Model hash": info.short_hash,
        "Model": info.name,
        "VAE hash": model.vae_hash,
        "VAE": model.vae_name,
        "Variation seed": subseed if req.subseed_strength > 0 else None,
        "Variation seed strength": req.subseed_strength if req.subseed_strength > 0 else None,
        "Denoising strength": req.denoising_strength,
        "Resize mode": req.resize_mode.label if req.resize_mode is not ResizeMode.JUST_RESIZE else None,
    }
    params.update(req.extra_generation_params)
    params["Version"] = VERSION
    return params
