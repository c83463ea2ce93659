"""Typed, validated generation requests. Validation runs before any work and names field, value and range."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.fields import (
    MAX_BATCH_COUNT,
    MAX_BATCH_SIZE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    NOISE_MULTIPLIER_MAX,
    NOISE_MULTIPLIER_MIN,
    RANDN_SOURCES,
    InpaintArea,
    MaskedContent,
    MaskMode,
    RequestError,
    ResizeMode,
)


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
    # A1111's noise options: where seeded noise is drawn (fields.RANDN_SOURCES), the seed offset of the
    # sampler's step noise (ENSD; never the initial noise) and the initial noise's scale (img2img only).
    randn_source: str = "GPU"
    eta_noise_seed_delta: int = 0
    initial_noise_multiplier: float = 1.0
    batch_size: int = 1
    n_iter: int = 1  # batch count
    # Inpainting: a mask (white = redraw) turns the run into an inpaint run.
    mask: Image.Image | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_mode: MaskMode = MaskMode.INPAINT_MASKED
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    inpaint_area: InpaintArea = InpaintArea.WHOLE_PICTURE
    only_masked_padding: int = 32
    mask_grow: int = 0  # px: > 0 dilates, < 0 erodes, before the blur
    soft_inpainting: bool = False  # per-pixel denoising strength from the blurred mask (differential diffusion)
    color_correction: bool = False  # match the output's colours to the init image (LAB histogram)
    img2img_fix_steps: bool = False  # A1111's option: run exactly `steps` steps whatever the strength
    # What colour correction matches (None: each item's own init picture). Loopback passes the ORIGINAL
    # picture here so that colours cannot drift loop after loop (A1111's p.color_corrections).
    color_reference_image: Image.Image | None = None
    # One init image per batch item (SD upscale batches its tiles this way); overrides init_image's role.
    batch_images: tuple[Image.Image, ...] = ()
    save_images: bool = True
    # A1111 options that act on one run (declared, with ranges and defaults, in pipelines/options.py).
    clip_skip: int = 1  # CLIP_stop_at_last_layers: the hidden state this many layers from the end
    emphasis: str = "Original"  # how (x:1.2) weights act: fields.EMPHASIS_MODES (prompt_chunks.apply_emphasis)
    inpainting_mask_weight: float = 1.0  # 9-channel models: 1 = masked image as conditioning, 0 = whole original
    background_color: str = "#ffffff"  # img2img_background_color: what transparent init pixels are flattened onto
    samples_format: str = "png"  # png / jpg / jpeg / webp
    jpeg_quality: int = 80
    outdir_samples: Path | None = None  # an already-checked folder (None: the engine's outputs/img2img-images)
    # A1111's grid options (pipelines/options.py): a run of several images also gives their grid (generation/grids.py).
    return_grid: bool = True
    grid_save: bool = True
    grid_format: str = "png"
    grid_extended_filename: bool = False
    grid_only_if_multiple: bool = True
    grid_prevent_empty_spots: bool = False
    n_rows: int = -1  # -1: auto, 0: the batch size
    grid_background_color: str = "#ffffff"
    outdir_grids: Path | None = None  # an already-checked folder (None: the engine's outputs/img2img-grids)
    # What the front end could not apply (ignored fields and options), shown with the result.
    notices: tuple[str, ...] = ()
    # Saved styles (styles.csv) applied to the prompts when the run starts, in this order (A1111's p.styles).
    styles: tuple[str, ...] = ()
    # Free-form extras a front end or script adds to the infotext (e.g. script parameters).
    extra_generation_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise RequestError for the first bad field. Samplers are checked against the registry."""
        from pipelines.generation.samplers import resolve_sampler  # local: samplers imports diffusers

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
        _check_range("n_iter", self.n_iter, 1, MAX_BATCH_COUNT)  # A1111's Batch count slider
        for name in ("seed", "subseed"):
            _check_int(name, getattr(self, name))
            if getattr(self, name) > MAX_SEED:
                raise RequestError(name, f"{getattr(self, name)} is outside -1..{MAX_SEED} (-1: random)")
        for name in ("prompt", "negative_prompt"):
            check_prompt(name, getattr(self, name))
        if not isinstance(self.styles, (tuple, list)) or not all(isinstance(s, str) for s in self.styles):
            raise RequestError("styles", f"expected a list of style names, got {self.styles!r}")
        _check_range("subseed_strength", self.subseed_strength, 0.0, 1.0)
        self._validate_noise()
        if not isinstance(self.resize_mode, ResizeMode):
            try:
                self.resize_mode = ResizeMode(self.resize_mode)
            except (ValueError, TypeError):
                raise RequestError("resize_mode", f"{self.resize_mode!r} is not one of 0, 1, 2, 3") from None
        resolve_sampler(self.sampler_name, self.scheduler)  # raises RequestError on unknown names
        self._validate_inpaint()
        self._validate_options()
        if self.color_reference_image is not None and not isinstance(self.color_reference_image, Image.Image):
            raise RequestError("color_reference_image", "expected a decoded image")
        if self.batch_images:
            if len(self.batch_images) != self.batch_size:
                raise RequestError("batch_images", f"{len(self.batch_images)} images for batch size {self.batch_size}")
            if self.mask is not None:
                raise RequestError("batch_images", "per-item init images cannot be combined with a mask")

    def _validate_noise(self) -> None:
        source = {s.lower(): s for s in RANDN_SOURCES}.get(str(self.randn_source).lower())
        if source is None:
            raise RequestError("randn_source", f"{self.randn_source!r} is not one of {', '.join(RANDN_SOURCES)}")
        self.randn_source = source
        _check_int("eta_noise_seed_delta", self.eta_noise_seed_delta)
        _check_range("initial_noise_multiplier", self.initial_noise_multiplier,
                     NOISE_MULTIPLIER_MIN, NOISE_MULTIPLIER_MAX)

    def _validate_inpaint(self) -> None:
        if self.mask is not None and not isinstance(self.mask, Image.Image):
            raise RequestError("mask", f"expected a decoded image, got {type(self.mask).__name__}")
        for name in ("mask_blur_x", "mask_blur_y"):
            _check_int(name, getattr(self, name))
            _check_range(name, getattr(self, name), 0, 64)
        _check_int("only_masked_padding", self.only_masked_padding)
        _check_range("only_masked_padding", self.only_masked_padding, 0, 256)
        _check_int("mask_grow", self.mask_grow)
        _check_range("mask_grow", self.mask_grow, -64, 64)
        for name, kind in (("mask_mode", MaskMode), ("masked_content", MaskedContent), ("inpaint_area", InpaintArea)):
            value = getattr(self, name)
            try:
                setattr(self, name, kind(value))
            except (ValueError, TypeError):
                allowed = ", ".join(f"{m.value} ({m.name.lower()})" for m in kind)
                raise RequestError(name, f"{value!r} is not one of {allowed}") from None

    def _validate_options(self) -> None:
        """The fields A1111 sets from options, checked by the option table's own rules (pipelines/options.py)."""
        from pipelines.options import BY_FIELD

        for name in ("clip_skip", "emphasis", "inpainting_mask_weight", "background_color", "samples_format",
                     "jpeg_quality", "return_grid", "grid_save", "grid_format", "grid_extended_filename",
                     "grid_only_if_multiple", "grid_prevent_empty_spots", "n_rows", "grid_background_color"):
            option = BY_FIELD[name]
            try:
                setattr(self, name, option.check(getattr(self, name)))
            except RequestError as exc:
                raise RequestError(name, exc.message) from None
        for name in ("outdir_samples", "outdir_grids"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                raise RequestError(name, f"expected a folder path, got {type(value).__name__}")

    def replace(self, **changes: Any) -> "Img2ImgRequest":
        """A copy with some fields changed: scripts derive requests instead of mutating shared ones."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["extra_generation_params"] = dict(self.extra_generation_params)
        values.update(changes)
        return type(self)(**values)


def check_prompt(name: str, value: Any) -> None:
    """Text, at most MAX_PROMPT_CHARS characters, and valid Unicode (a lone surrogate such as "\\ud800" cannot be
    tokenised, saved or returned as UTF-8). The token bound is checked where the tokenizer is (prompt_encoding)."""
    if not isinstance(value, str):
        raise RequestError(name, f"expected text, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(name, f"{len(value)} characters is more than the limit of {MAX_PROMPT_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(name, f"is not valid Unicode text (a lone surrogate at character {exc.start})") from None


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"{value!r} is not an integer")


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(name, f"{value!r} is not a number")
    if not (low <= value <= high):
        raise RequestError(name, f"{value} is outside {low}..{high}")
