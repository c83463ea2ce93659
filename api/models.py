"""Pydantic schemas of the /sdapi/v1 API, field for field A1111's (names, defaults, response shapes).

Like A1111's generated models, unknown request fields are accepted and ignored, and most fields accept an
explicit null (= the default). Types are checked here (422 naming the field); ranges are checked by
Img2ImgRequest.validate(), which names the field too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), populate_by_name=True)


class ProcessingBody(_Lenient):
    """The fields /txt2img and /img2img share (A1111's StableDiffusionProcessing). API defaults, not UI defaults."""

    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0.0
    seed_resize_from_h: int | None = Field(default=-1, description="accepted, ignored")
    seed_resize_from_w: int | None = Field(default=-1, description="accepted, ignored")
    sampler_name: str | None = Field(
        default=None, description='default "Euler" (as A1111\'s API); legacy names like "DPM++ 2M Karras" work'
    )
    sampler_index: str | int | None = Field(
        default=None, description="legacy: used when sampler_name is absent"
    )
    scheduler: str | None = Field(default=None, description="schedule type: Automatic, Karras, ...")
    batch_size: int | None = 1
    n_iter: int | None = 1
    steps: int | None = 50
    cfg_scale: float | None = 7.0
    width: int | None = 512
    height: int | None = 512
    restore_faces: bool | None = Field(default=None, description="not available: must be false")
    tiling: bool | None = Field(default=None, description="not available: must be false")
    do_not_save_samples: bool | None = False
    do_not_save_grid: bool | None = False
    eta: float | None = None
    denoising_strength: float | None = 0.75
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool | None = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool | None = False
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list[Any] | None = Field(default_factory=list)
    send_images: bool | None = True
    save_images: bool | None = False
    alwayson_scripts: dict[str, Any] | None = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None


class Img2ImgBody(ProcessingBody):
    """POST /sdapi/v1/img2img (A1111's StableDiffusionProcessingImg2Img): the shared fields plus these."""

    init_images: list[str] | None = Field(default=None, description="base64 images or data: URLs")
    resize_mode: int | None = Field(
        default=0,
        description="0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale)",
    )
    image_cfg_scale: float | None = Field(
        default=None, description="accepted, ignored (instruct-pix2pix only)"
    )
    mask: str | None = Field(default=None, description="base64 mask: white = inpaint")
    mask_blur: int | None = Field(default=None, description="sets mask_blur_x and mask_blur_y")
    mask_blur_x: int | None = 4
    mask_blur_y: int | None = 4
    inpainting_fill: int | None = Field(
        default=0, description="0 fill, 1 original, 2 latent noise, 3 latent nothing"
    )
    inpaint_full_res: bool | None = Field(default=True, description="true = inpaint only the masked area")
    inpaint_full_res_padding: int | None = 0
    inpainting_mask_invert: int | None = Field(default=0, description="1 = inpaint the unmasked area")
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool | None = False


class ImageToImageResponse(BaseModel):
    images: list[str] | None = Field(default=None, description="base64 PNGs with the infotext embedded")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: prompt, seeds, infotexts, ...")


class PNGInfoRequest(_Lenient):
    image: str = Field(description="base64 image or data: URL")


class PNGInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ProgressResponse(BaseModel):
    progress: float = Field(description="0..1")
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


class InterrogateRequest(_Lenient):
    image: str = ""
    model: str = "clip"


class InterrogateResponse(BaseModel):
    caption: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class UpscalerItem(_Lenient):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class SDModelItem(_Lenient):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None
    family: str | None = None  # "sd1", "sd2" or "sdxl" (this app's addition; None: a .ckpt not loaded yet)


class SDVaeItem(_Lenient):
    model_name: str
    filename: str
