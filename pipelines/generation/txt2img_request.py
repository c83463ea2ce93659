"""The typed txt2img request (with A1111's Hires. fix fields), validated before any work.

The fields txt2img shares with img2img (prompts, size, sampler, seeds, batch, options) are checked by
Img2ImgRequest's own rules, so both tabs and both API routes refuse the same values with the same words;
the Hires. fix fields are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.fields import MAX_SIDE, MIN_SIDE, RequestError
from pipelines.generation.hires import LATENT_UPSCALE_MODES, HiresTarget, hires_target
from pipelines.generation.requests import Img2ImgRequest, _check_int, _check_range, check_prompt

MAX_HIRES_SIDE = 2 * MAX_SIDE  # the second pass may double the largest first pass
MAX_HIRES_SCALE = 8.0
# Fields an Img2ImgRequest holds for one txt2img pass (the rest are img2img's own and keep their defaults).
_SHARED = ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler_name", "scheduler",
           "seed", "subseed", "subseed_strength", "randn_source", "eta_noise_seed_delta", "batch_size", "n_iter",
           "save_images", "clip_skip", "emphasis", "samples_format", "jpeg_quality", "notices", "styles",
           "extra_generation_params", "return_grid", "grid_save", "grid_format", "grid_extended_filename",
           "grid_only_if_multiple", "grid_prevent_empty_spots", "n_rows", "grid_background_color")


@dataclass
class Txt2ImgRequest:
    """Everything one txt2img run needs. Defaults are A1111's UI defaults."""

    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    randn_source: str = "GPU"
    eta_noise_seed_delta: int = 0
    batch_size: int = 1
    n_iter: int = 1
    # Hires. fix: a second, img2img pass over the first pass made bigger.
    enable_hr: bool = False
    denoising_strength: float = 0.7
    hr_scale: float = 2.0
    # A LATENT_UPSCALE_MODES name or an upscaler name (models/upscalers.py); None (the API's default): "Latent",
    # without a "Hires upscaler" key in the infotext.
    hr_upscaler: str | None = "Latent"
    hr_second_pass_steps: int = 0  # 0: the same as steps
    hr_resize_x: int = 0  # both 0: resize by hr_scale
    hr_resize_y: int = 0
    hr_sampler_name: str | None = None  # None: the first pass's sampler
    hr_scheduler: str | None = None  # None: the first pass's schedule type
    hr_prompt: str = ""  # "": the prompt
    hr_negative_prompt: str = ""
    save_images: bool = True
    clip_skip: int = 1
    emphasis: str = "Original"
    samples_format: str = "png"
    jpeg_quality: int = 80
    outdir_samples: Path | None = None  # an already-checked folder (None: the engine's outputs/txt2img-images)
    # A1111's grid options (pipelines/options.py, generation/grids.py), as img2img has them.
    return_grid: bool = True
    grid_save: bool = True
    grid_format: str = "png"
    grid_extended_filename: bool = False
    grid_only_if_multiple: bool = True
    grid_prevent_empty_spots: bool = False
    n_rows: int = -1
    grid_background_color: str = "#ffffff"
    outdir_grids: Path | None = None  # an already-checked folder (None: the engine's outputs/txt2img-grids)
    notices: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    extra_generation_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise RequestError for the first bad field (shared fields by img2img's rules, then Hires. fix)."""
        checked = self.as_img2img(init_image=Image.new("RGB", (8, 8)))
        checked.validate()
        for name in ("outdir_samples", "outdir_grids"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                raise RequestError(name, f"expected a folder path, got {type(value).__name__}")
        for name in ("randn_source", "clip_skip", "emphasis", "samples_format", "jpeg_quality", "return_grid",
                     "grid_save", "grid_format", "grid_extended_filename", "grid_only_if_multiple",
                     "grid_prevent_empty_spots", "n_rows", "grid_background_color"):
            setattr(self, name, getattr(checked, name))  # validate() normalises these (case, aliases)
        if not isinstance(self.enable_hr, bool):
            raise RequestError("enable_hr", f"{self.enable_hr!r} is not true or false")
        if self.enable_hr:
            self._validate_hires()

    def _validate_hires(self) -> None:
        from pipelines.generation.samplers import resolve_sampler  # local: samplers imports diffusers

        _check_range("denoising_strength", self.denoising_strength, 0.0, 1.0)
        _check_range("hr_scale", self.hr_scale, 0.0, MAX_HIRES_SCALE)
        if self.hr_scale <= 0:
            raise RequestError("hr_scale", f"{self.hr_scale} must be more than 0")
        for name in ("hr_resize_x", "hr_resize_y"):
            _check_int(name, getattr(self, name))
            _check_range(name, getattr(self, name), 0, MAX_HIRES_SIDE)
        _check_int("hr_second_pass_steps", self.hr_second_pass_steps)
        _check_range("hr_second_pass_steps", self.hr_second_pass_steps, 0, 150)
        if self.hr_upscaler is not None and (not isinstance(self.hr_upscaler, str) or not self.hr_upscaler.strip()):
            raise RequestError("hr_upscaler", f"{self.hr_upscaler!r} is not an upscaler name")
        for name in ("hr_prompt", "hr_negative_prompt"):
            check_prompt(name, getattr(self, name))
        try:
            resolve_sampler(self.hr_sampler_name or self.sampler_name, self.hr_scheduler or self.scheduler)
        except RequestError as exc:
            raise RequestError("hr_sampler_name" if exc.field == "sampler_name" else "hr_scheduler",
                               exc.message) from None
        target = self.hires_target
        for name, side in (("hr_resize_x", target.width), ("hr_resize_y", target.height)):
            if not MIN_SIDE <= side <= MAX_HIRES_SIDE:
                raise RequestError(name if (self.hr_resize_x or self.hr_resize_y) else "hr_scale",
                                   f"the Hires. fix size {target.width}x{target.height} is outside "
                                   f"{MIN_SIDE}..{MAX_HIRES_SIDE} per side")

    @property
    def hires_target(self) -> HiresTarget:
        return hires_target(self.width, self.height, self.hr_scale, self.hr_resize_x, self.hr_resize_y)

    @property
    def latent_upscale(self) -> bool:
        return self.hr_upscaler is None or self.hr_upscaler in LATENT_UPSCALE_MODES

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the pictures the run returns (the second pass's when Hires. fix is on)."""
        if not self.enable_hr:
            return self.width, self.height
        target = self.hires_target
        return target.width // 8 * 8, target.height // 8 * 8

    def as_img2img(self, **changes: Any) -> Img2ImgRequest:
        """The shared fields as an Img2ImgRequest (the engine's batch steps and infotext read that type)."""
        values = {name: getattr(self, name) for name in _SHARED}
        values["extra_generation_params"] = dict(self.extra_generation_params)
        values.update(changes)
        return Img2ImgRequest(init_image=values.pop("init_image", None), **values)

    def replace(self, **changes: Any) -> "Txt2ImgRequest":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["extra_generation_params"] = dict(self.extra_generation_params)
        values.update(changes)
        return type(self)(**values)
