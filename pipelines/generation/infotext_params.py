"""An output's infotext parameters (the `Key: value` line) in A1111's order, from the request that made it."""

from __future__ import annotations

from typing import Any

from pipelines.fields import InpaintArea, MaskedContent, MaskMode, ResizeMode
from pipelines.generation.conditioning import uses_emphasis_markup
from pipelines.generation.noise import uses_ensd
from pipelines.generation.prompt_chunks import DEFAULT_EMPHASIS
from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SamplerChoice

VERSION = "img2img-studio 0.1.0"


def generation_params(req: Img2ImgRequest, sampler: SamplerChoice, model, seed: int, subseed: int) -> dict[str, Any]:
    """The infotext's key: value pairs in A1111's order; defaults that A1111 omits are left out."""
    info = model.info
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": sampler.name,
        "Schedule type": sampler.infotext_schedule,  # always written, as A1111 does
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
        # A1111 writes the mask weight whenever a 9-channel model's conditioning is in use (also without a mask).
        "Conditional mask weight": req.inpainting_mask_weight if _nine_channel(model) else None,
        "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
        "ENSD": req.eta_noise_seed_delta if uses_ensd(req.eta_noise_seed_delta, sampler.name, req) else None,
        "RNG": req.randn_source if req.randn_source != "GPU" else None,
        "Resize mode": req.resize_mode.label if req.resize_mode is not ResizeMode.JUST_RESIZE else None,
        "Color correction": True if req.color_correction else None,
    }
    if req.mask is not None:
        params.update(inpaint_params(req))
    params["Noise multiplier"] = req.initial_noise_multiplier if req.initial_noise_multiplier != 1.0 else None
    params.update(req.extra_generation_params)
    # A1111 records a non-default emphasis mode only when a prompt has emphasis markup for it to act on.
    if req.emphasis != DEFAULT_EMPHASIS and uses_emphasis_markup((req.prompt, req.negative_prompt), req.steps):
        params["Emphasis"] = req.emphasis
    params["Version"] = VERSION
    return params


def _nine_channel(model) -> bool:
    components = getattr(model, "components", None)  # infotext callers may pass a model's facts only
    return bool(getattr(components, "is_inpainting", False))


def inpaint_params(req: Img2ImgRequest) -> dict[str, Any]:
    """The inpaint keys in the order A1111's StableDiffusionProcessingImg2Img.init adds them: Mask mode, Mask
    blur, Inpaint area, Masked area padding, Masked content. "Mask blur" is A1111's single value (written
    also when 0, as its img2img tab does); separate x / y blurs, which A1111 leaves out, are kept as two keys."""
    only_masked = req.inpaint_area is InpaintArea.ONLY_MASKED
    blur = req.mask_blur_x if req.mask_blur_x == req.mask_blur_y else None
    return {
        # The always-on script "Soft Inpainting" adds its key before processing starts, so before the rest.
        "Soft inpainting enabled": True if req.soft_inpainting else None,
        "Mask mode": "Inpaint not masked" if req.mask_mode is MaskMode.INPAINT_NOT_MASKED else None,
        "Mask blur": blur,
        "Mask blur x": None if blur is not None else req.mask_blur_x,
        "Mask blur y": None if blur is not None else req.mask_blur_y,
        "Inpaint area": "Only masked" if only_masked else None,
        "Masked area padding": req.only_masked_padding if only_masked else None,
        "Masked content": req.masked_content.label if req.masked_content is not MaskedContent.ORIGINAL else None,
        "Mask grow": req.mask_grow or None,
    }
