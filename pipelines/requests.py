"""Typed, validated generation requests. Validation runs before any work and names field, value and range."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image


class RequestError(ValueError):
    """A request field holds a value the engine cannot run. `field` names it for UI and HTTP errors."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class ResizeMode(enum.IntEnum):
    JUST_RESIZE = 0
    CROP_AND_RESIZE = 1
    RESIZE_AND_FILL = 2
    LATENT_UPSCALE = 3

    @property
    def label(self) -> str:
        return RESIZE_MODE_LABELS[self]


RESIZE_MODE_LABELS = {
    ResizeMode.JUST_RESIZE: "Just resize",
    ResizeMode.CROP_AND_RESIZE: "Crop and resize",
    ResizeMode.RESIZE_AND_FILL: "Resize and fill",
    ResizeMode.LATENT_UPSCALE: "Just resize (latent upscale)",
}

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_BATCH_SIZE = 8


@dataclass
class Img2ImgRequest:
    """Everything one img2img run needs. Defaults are A1111's UI defaults."""

    init_image: Image.Image | None
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE
    denoising_strength: float = 0.75
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"  # the schedule type
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    batch_size: int = 1
    n_iter: int = 1  # batch count
    save_images: bool = True
    # Free-form extras a front end or script adds to the infotext (e.g. script parameters).
    extra_generation_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise RequestError for the first bad field. Samplers are checked against the registry."""
        from pipelines.samplers import resolve_sampler  # local: samplers imports diffusers

        if self.init_image is None:
            raise RequestError("init_image", "no init image was given")
        if not isinstance(self.init_image, Image.Image):
            raise RequestError("init_image", f"expected a decoded image, got {type(self.init_image).__name__}")
        for name in ("width", "height"):
            value = getattr(self, name)
            _check_int(name, value)
            if not (MIN_SIDE <= value <= MAX_SIDE) or value % 8:
                raise RequestError(name, f"{value} is not a multiple of 8 in {MIN_SIDE}..{MAX_SIDE}")
        _check_range("denoising_strength", self.denoising_strength, 0.0, 1.0)
        _check_int("steps", self.steps)
        _check_range("steps", self.steps, 1, 150)
        _check_range("cfg_scale", self.cfg_scale, 1.0, 30.0)
        _check_int("batch_size", self.batch_size)
        _check_range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("n_iter", self.n_iter)
        if self.n_iter < 1:
            raise RequestError("n_iter", f"{self.n_iter} must be at least 1")
        _check_int("seed", self.seed)
        _check_int("subseed", self.subseed)
        _check_range("subseed_strength", self.subseed_strength, 0.0, 1.0)
        if not isinstance(self.resize_mode, ResizeMode):
            try:
                self.resize_mode = ResizeMode(self.resize_mode)
            except (ValueError, TypeError):
                raise RequestError("resize_mode", f"{self.resize_mode!r} is not one of 0, 1, 2, 3") from None
        resolve_sampler(self.sampler_name, self.scheduler)  # raises RequestError on unknown names

    def replace(self, **changes: Any) -> "Img2ImgRequest":
        """A copy with some fields changed: scripts derive requests instead of mutating shared ones."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["extra_generation_params"] = dict(self.extra_generation_params)
        values.update(changes)
        return type(self)(**values)


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"{value!r} is not an integer")


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(name, f"{value!r} is not a number")
    if not (low <= value <= high):
        raise RequestError(name, f"{value} is outside {low}..{high}")
