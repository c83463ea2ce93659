"""Inpainting's image side: mask preparation, the only-masked crop, masked content, the final composite.

Before sampling: `plan_inpaint` turns the request's image + mask into the picture to encode (cropped
for "Only masked", filled for "fill"), the mask at processing size and the mask used for the final
composite. After sampling: `finish_inpaint` puts each result back so that every pixel outside the mask is
the original's. Semantics follow A1111's StableDiffusionProcessingImg2Img.init and its overlay step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from pipelines.fields import InpaintArea, MaskedContent, MaskMode, RequestError
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images import image_ops, mask_ops
from pipelines.options import color_rgb


@dataclass
class InpaintPlan:
    image: Image.Image  # what gets encoded: width x height, filled when masked content is "fill"
    mask: Image.Image  # "L", width x height, blurred: where the sampler may change the picture
    original: Image.Image  # the picture results are composited onto (full size for "Only masked")
    overlay_mask: Image.Image  # "L", the size of `original`: how much of each result pixel to keep
    region: tuple[int, int, int, int] | None = None  # the only-masked crop box in `original`
    notices: list[str] = field(default_factory=list)


class NothingToInpaint(RequestError):
    """The mask selects no pixel. Not an error for the engine: A1111 composites the original back over every
    pixel, so the run returns the init picture unchanged (with a notice)."""


def prepare_request_mask(req: Img2ImgRequest) -> Image.Image:
    """The request's mask as "L" at the init image's size, inverted/grown/blurred; NothingToInpaint if empty."""
    image = req.init_image
    mask = mask_ops.mask_from_image(req.mask)
    if mask.size != image.size:  # a mask of another size follows the image's geometry: stretched onto it
        mask = mask.resize(image.size, Image.NEAREST)  # a selection, not a picture: no ringing past its edge
    binary = mask_ops.prepare_mask(mask, invert=req.mask_mode is MaskMode.INPAINT_NOT_MASKED, grow=req.mask_grow)
    if binary.getbbox() is None:
        what = "after shrinking, " if req.mask_grow < 0 else ""
        side = "inverted mask is all white" if req.mask_mode is MaskMode.INPAINT_NOT_MASKED else "mask is all black"
        raise NothingToInpaint("mask", f"{what}the {side}: there is nothing to inpaint")
    return mask_ops.blur_mask(binary, req.mask_blur_x, req.mask_blur_y)


def plan_inpaint(req: Img2ImgRequest) -> InpaintPlan:
    full_image = image_ops.flatten_onto(req.init_image, color_rgb(req.background_color))
    mask = prepare_request_mask(req)
    if req.inpaint_area is InpaintArea.ONLY_MASKED:
        # 1a. Only masked: inpaint the mask's box (+ padding, grown to the target aspect) at full size.
        bbox = mask.getbbox()
        region = mask_ops.expand_crop_region(bbox, req.only_masked_padding, *full_image.size, req.width, req.height)
        image = mask_ops.crop_for_inpaint(full_image, region, req.width, req.height)
        work_mask = mask_ops.crop_for_inpaint(mask, region, req.width, req.height)
        plan = InpaintPlan(image, work_mask, full_image, mask, region)
    else:
        # 1b. Whole picture: image and mask share the resize mode's geometry. A1111 doubles the overlay
        # mask so the composite keeps the blur's outer half original and the inner half generated.
        latent = req.resize_mode is image_ops.ResizeMode.LATENT_UPSCALE
        mode = image_ops.ResizeMode.JUST_RESIZE if latent else req.resize_mode
        image = image_ops.resize_image(full_image, mode, req.width, req.height)
        work_mask = image_ops.resize_image(mask, mode, req.width, req.height)
        overlay = Image.fromarray(np.clip(np.asarray(work_mask, np.float32) * 2, 0, 255).astype(np.uint8), "L")
        plan = InpaintPlan(image, work_mask, image, overlay)
    if req.masked_content is MaskedContent.FILL:
        plan.image = mask_ops.fill_masked_area(plan.image, plan.mask)
    return plan


def latent_mask(mask: Image.Image, latent_h: int, latent_w: int, soft: bool = False) -> torch.Tensor:
    """The mask at latent resolution, (1, 1, h, w) in 0..1: rounded to 0/1 like A1111, or kept soft."""
    small = mask.resize((latent_w, latent_h), Image.LANCZOS)
    values = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)[None, None]
    return values if soft else values.round()


def apply_masked_content(init_latents: torch.Tensor, mask: torch.Tensor, content: MaskedContent,
                         noise: torch.Tensor) -> torch.Tensor:
    """Per-image start latents (batch, 4, h, w): latent noise puts the image's seeded noise in the mask,
    latent nothing puts zeros there; fill and original start from the (already filled) picture."""
    batch = noise.shape[0]
    latents = init_latents.expand(batch, *init_latents.shape[1:])
    mask = mask.to(latents.device, latents.dtype)
    if content is MaskedContent.LATENT_NOISE:
        return latents * (1 - mask) + noise.to(latents.device, latents.dtype) * mask
    if content is MaskedContent.LATENT_NOTHING:
        return latents * (1 - mask)
    return latents


def finish_inpaint(plan: InpaintPlan, result: Image.Image) -> Image.Image:
    """Composite one result back: outside the mask every pixel is the original's."""
    if plan.region is not None:
        return mask_ops.paste_back(plan.original, result, plan.region, plan.overlay_mask)
    return mask_ops.composite_original(plan.original, result, plan.overlay_mask)
