"""How much work and memory one request may ask for: declared once here, set by launch flags at start-up.

Every bound is checked before the work it guards: an image's declared size before its pixels are decoded,
the images of a request before the next one is decoded, a job's output before it is queued. Each error
names the field and the limit, and the launch flag that raises it. No gradio, fastapi or torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipelines.fields import RequestError

MIB = 1024 * 1024
# Latent upscale (resize mode 3) encodes the source at its own size (A1111); a source larger than this
# many times the target per side is first scaled down to it (the latent is scaled to the target anyway).
LATENT_UPSCALE_SOURCE_FACTOR = 2


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * MIB  # one HTTP request body (several base64 PNGs fit)
    max_image_pixels: int = 4096 * 4096  # one input image (init image, mask), by its declared size
    max_request_pixels: int = 4 * 4096 * 4096  # every input image of one request together
    max_output_pixels: int = 8192 * 8192  # one output image (SD upscale's result)
    max_job_pixels: int = 2**28  # every image one request produces (width x height x batch size x count)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """The limits the launch flags set (a flag left out keeps the default)."""
        values = {}
        if getattr(settings, "api_max_body_mb", None) is not None:
            values["max_body_bytes"] = int(settings.api_max_body_mb * MIB)
        for name in ("max_image_pixels", "max_request_pixels", "max_output_pixels", "max_job_pixels"):
            if getattr(settings, name, None) is not None:
                values[name] = int(getattr(settings, name))
        return cls(**values)

    # Input images ---------------------------------------------------------------------------------------
    def check_image_size(self, field: str, size: tuple[int, int], spent: int = 0) -> int:
        """An image of `size` (its declared width, height) may be decoded after `spent` pixels of the same
        request; returns the request's pixels with it. RequestError(field) otherwise."""
        pixels = size[0] * size[1]
        if pixels > self.max_image_pixels:
            raise RequestError(field, f"image of {size[0]}x{size[1]} ({_mp(pixels)}) is more than the "
                                      f"{_mp(self.max_image_pixels)} allowed per image (--max-image-pixels)")
        if spent + pixels > self.max_request_pixels:
            raise RequestError(field, f"the request's images add up to {_mp(spent + pixels)}, more than the "
                                      f"{_mp(self.max_request_pixels)} allowed per request (--max-request-pixels)")
        return spent + pixels

    def check_request(self, request: Any) -> None:
        """A validated Img2ImgRequest: its input images (the UI hands them decoded) and its output."""
        spent = 0
        images = [(f"batch_images[{i}]", image) for i, image in enumerate(request.batch_images)]
        images = (images or [("init_image", request.init_image)]) + [("mask", request.mask)]
        for name, image in images:
            if isinstance(image, Image.Image):
                spent = self.check_image_size(name, image.size, spent)
        self.check_job("n_iter", request.width, request.height, request.batch_size * request.n_iter)

    # Output ---------------------------------------------------------------------------------------------
    def check_job(self, field: str, width: int, height: int, count: int) -> None:
        """`count` output images of width x height: each within max_output_pixels, all within max_job_pixels."""
        if width * height > self.max_output_pixels:
            raise RequestError(field, f"the output of {width}x{height} ({_mp(width * height)}) is more than the "
                                      f"{_mp(self.max_output_pixels)} allowed per image (--max-output-pixels)")
        total = width * height * count
        if total > self.max_job_pixels:
            raise RequestError(field, f"{count} images of {width}x{height} ({_mp(total)}) are more than the "
                                      f"{_mp(self.max_job_pixels)} one request may produce (--max-job-pixels); "
                                      "lower the batch count or size")


class ImageBudget:
    """The input pixels one request has decoded so far: admit() each image's declared size before decoding."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.spent = 0

    def admit(self, field: str, size: tuple[int, int]) -> None:
        self.spent = self.limits.check_image_size(field, size, self.spent)


def latent_upscale_source(image: Image.Image, width: int, height: int) -> tuple[Image.Image, str | None]:
    """The source latent upscale encodes: as it is (A1111), unless a side is over LATENT_UPSCALE_SOURCE_FACTOR
    times the target's; then scaled down (aspect kept) until none is, with a notice saying so."""
    factor = LATENT_UPSCALE_SOURCE_FACTOR
    scale = min(factor * width / image.width, factor * height / image.height)
    if scale >= 1:
        return image, None
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    notice = (f"latent upscale: the {image.width}x{image.height} source was scaled down to {size[0]}x{size[1]} "
              f"({factor}x the {width}x{height} target) before encoding; A1111 encodes it at full size")
    return image.resize(size, Image.Resampling.LANCZOS), notice


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"
