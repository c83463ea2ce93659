"""A1111's settings ("options") that reach an img2img run: each declared once, here.

One row per option: its A1111 key, type, default (A1111's), range or choices, label, the Img2ImgRequest field
it sets and its infotext key. From this table the HTTP API derives GET/POST /options and override_settings
(validation, defaults, which request field each key sets) and the UI derives its Settings controls.

An option is one of:
- "request": sets an Img2ImgRequest field for the run (clip skip, mask weight, background colour, saving);
- "model": switches the checkpoint or VAE (the front end does the switch);
- "ignored": an A1111 option this engine does not apply; a value other than its default gives a notice.
A request field the table names but Img2ImgRequest does not have (yet) is treated as ignored, with a notice.
No gradio, fastapi or torch here: this is the bottom floor beside fields.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pipelines.fields import EMPHASIS_MODES, RequestError

REQUEST, MODEL, IGNORED = "request", "model", "ignored"
MAX_TEXT_CHARS = 4096  # a text or path option's value (a folder name, a checkpoint title)
SAMPLES_FORMATS = ("png", "jpg", "jpeg", "webp")


@dataclass(frozen=True)
class Option:
    key: str  # A1111's option name (override_settings / POST /options)
    kind: str  # "bool", "int", "float", "choice", "color", "text", "path"
    default: Any  # A1111's default
    label: str  # A1111's label
    field: str | None = None  # the Img2ImgRequest field it sets
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    infotext: str | None = None  # the infotext key the value is recorded under
    applies: str = REQUEST
    ui: bool = True  # shown in the UI's Settings accordion (False: the UI has its own control, or none)

    def check(self, value: Any) -> Any:
        """The value in its canonical type; RequestError naming the key and the allowed values."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise RequestError(self.key, f"{_clip(repr(value))} is not true or false")
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RequestError(self.key, f"{_clip(repr(value))} is not a number")
            if self.kind == "int":
                if float(value) != int(value):
                    raise RequestError(self.key, f"{_clip(repr(value))} is not a whole number")
                value = int(value)
            else:
                value = float(value)
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not low <= value <= high:
                raise RequestError(self.key, f"{value} is outside {_number(self.minimum)}..{_number(self.maximum)}")
            return value
        if not isinstance(value, str):
            raise RequestError(self.key, f"{_clip(repr(value))} is not text")
        if len(value) > MAX_TEXT_CHARS:
            raise RequestError(self.key, f"{len(value)} characters is more than the limit of {MAX_TEXT_CHARS}")
        if self.kind == "choice":
            for choice in self.choices:
                if choice.lower() == value.strip().lower():
                    return choice
            raise RequestError(self.key, f"{_clip(repr(value))} is not one of {', '.join(self.choices)}")
        if self.kind == "color":
            return parse_color(self.key, value)
        return value


def _clip(text: str, limit: int = 80) -> str:
    """A client's text as it goes into a message: never megabytes of it."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def parse_color(key: str, value: str) -> str:
    """A CSS hex colour "#rrggbb" (or "#rgb"), as A1111's colour picker sends it; returned as "#rrggbb"."""
    text = value.strip().lower()
    digits = text[1:] if text.startswith("#") else ""
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if len(digits) != 6 or any(c not in "0123456789abcdef" for c in digits):
        raise RequestError(key, f"{_clip(repr(value))} is not a colour like #ffffff")
    return "#" + digits


def color_rgb(value: str) -> tuple[int, int, int]:
    digits = parse_color("color", value)[1:]
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


OPTIONS: tuple[Option, ...] = (
    # img2img section
    Option("img2img_color_correction", "bool", False,
           "Apply color correction to img2img results to match original colors.", field="color_correction",
           infotext="Color correction", ui=False),  # the UI has its own Color correction checkbox
    Option("img2img_fix_steps", "bool", False, "With img2img, do exactly the amount of steps the slider specifies.",
           field="img2img_fix_steps"),
    Option("initial_noise_multiplier", "float", 1.0, "Noise multiplier for img2img", field="initial_noise_multiplier",
           minimum=0.0, maximum=1.5, step=0.001, infotext="Noise multiplier"),
    Option("inpainting_mask_weight", "float", 1.0, "Inpainting conditioning mask strength",
           field="inpainting_mask_weight", minimum=0.0, maximum=1.0, step=0.01, infotext="Conditional mask weight"),
    Option("img2img_background_color", "color", "#ffffff",
           "With img2img, fill transparent parts of the input image with this color.", field="background_color"),
    # Stable Diffusion section
    Option("CLIP_stop_at_last_layers", "int", 1, "Clip skip", field="clip_skip", minimum=1, maximum=12, step=1,
           infotext="Clip skip"),
    Option("emphasis", "choice", "Original", "Emphasis mode", field="emphasis", choices=EMPHASIS_MODES,
           infotext="Emphasis"),
    Option("randn_source", "choice", "GPU", "Random number generator source.", field="randn_source",
           choices=("GPU", "CPU", "NV"), infotext="RNG"),
    Option("sd_model_checkpoint", "text", None, "Stable Diffusion checkpoint", applies=MODEL, ui=False),
    Option("sd_vae", "text", "Automatic", "SD VAE", applies=MODEL, ui=False),
    # Sampler parameters
    Option("eta_ancestral", "float", 1.0, "Eta for k-diffusion samplers", field="eta", minimum=0.0, maximum=1.0,
           step=0.01, infotext="Eta"),
    Option("eta_noise_seed_delta", "int", 0, "Eta noise seed delta", field="eta_noise_seed_delta", minimum=0,
           step=1, infotext="ENSD"),
    # Saving images
    Option("samples_save", "bool", True, "Always save all generated images", field="save_images", ui=False),
    Option("samples_format", "choice", "png", "File format for images", field="samples_format",
           choices=SAMPLES_FORMATS),
    Option("jpeg_quality", "int", 80, "Quality for saved jpeg images", field="jpeg_quality", minimum=1, maximum=100,
           step=1),
    Option("outdir_img2img_samples", "path", "outputs/img2img-images", "Output directory for img2img images",
           field="outdir_samples", ui=False),
    # Grids: a run of more than one image also gives A1111's grid (pipelines/generation/grids.py).
    Option("return_grid", "bool", True, "Show grid in gallery", field="return_grid"),
    Option("grid_save", "bool", True, "Always save all generated image grids", field="grid_save"),
    Option("grid_format", "choice", "png", "File format for grids", field="grid_format", choices=SAMPLES_FORMATS),
    Option("grid_extended_filename", "bool", False, "Add extended info (seed, prompt) to filename when saving grid",
           field="grid_extended_filename"),
    Option("grid_only_if_multiple", "bool", True, "Do not save grids consisting of one picture",
           field="grid_only_if_multiple"),
    Option("grid_prevent_empty_spots", "bool", False, "Prevent empty spots in grid (when set to autodetect)",
           field="grid_prevent_empty_spots"),
    Option("n_rows", "int", -1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size",
           field="n_rows", minimum=-1, maximum=16, step=1),
    Option("grid_background_color", "color", "#ffffff", "Background color for image grids",
           field="grid_background_color"),
    Option("outdir_img2img_grids", "path", "outputs/img2img-grids", "Output directory for img2img grids",
           field="outdir_grids", ui=False),
    # A1111 options this engine does not apply: a value other than the default gives a notice.
    Option("eta_ddim", "float", 0.0, "Eta for DDIM", minimum=0.0, maximum=1.0, applies=IGNORED, ui=False),
    Option("s_churn", "float", 0.0, "sigma churn", minimum=0.0, maximum=100.0, applies=IGNORED, ui=False),
    Option("s_tmin", "float", 0.0, "sigma tmin", minimum=0.0, maximum=10.0, applies=IGNORED, ui=False),
    Option("s_tmax", "float", 0.0, "sigma tmax", minimum=0.0, maximum=999.0, applies=IGNORED, ui=False),
    Option("s_noise", "float", 1.0, "sigma noise", minimum=0.0, maximum=1.1, applies=IGNORED, ui=False),
    Option("s_min_uncond", "float", 0.0, "Negative Guidance minimum sigma", minimum=0.0, maximum=15.0,
           applies=IGNORED, ui=False),
    Option("img2img_extra_noise", "float", 0.0, "Extra noise multiplier for img2img and hires fix", minimum=0.0,
           maximum=1.0, applies=IGNORED, ui=False),
    Option("always_discard_next_to_last_sigma", "bool", False, "Always discard next-to-last sigma", applies=IGNORED,
           ui=False),
    Option("sd_vae_encode_method", "choice", "Full", "VAE type for encode", choices=("Full", "TAESD"),
           applies=IGNORED, ui=False),
    Option("sd_vae_decode_method", "choice", "Full", "VAE type for decode", choices=("Full", "TAESD"),
           applies=IGNORED, ui=False),
    Option("token_merging_ratio", "float", 0.0, "Token merging ratio", minimum=0.0, maximum=0.9, applies=IGNORED,
           ui=False),
    Option("token_merging_ratio_img2img", "float", 0.0, "Token merging ratio for img2img", minimum=0.0,
           maximum=0.9, applies=IGNORED, ui=False),
    Option("enable_emphasis", "bool", True, "Enable emphasis", applies=IGNORED, ui=False),
    Option("upcast_attn", "bool", False, "Upcast cross attention layer to float32", applies=IGNORED, ui=False),
    Option("tiling", "bool", False, "Tiling", applies=IGNORED, ui=False),
    Option("face_restoration", "bool", False, "Restore faces", applies=IGNORED, ui=False),
    Option("enable_pnginfo", "bool", True, "Save text information about generation parameters as chunks to png files",
           applies=IGNORED, ui=False),
)
BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}
BY_FIELD: dict[str, Option] = {option.field: option for option in OPTIONS if option.field}


def option_defaults() -> dict[str, Any]:
    return {option.key: option.default for option in OPTIONS}


def check_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys checked and made canonical (RequestError on the first bad one); unknown keys kept as sent
    (A1111 keeps extension settings it does not know)."""
    return {key: BY_KEY[key].check(value) if key in BY_KEY and value is not None else value
            for key, value in values.items()}


def known_options(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """POST /options: the keys this server knows, and a notice per unknown key, which is ignored (A1111 keeps
    extension settings; storing whatever a client sends would let it grow the server's memory without end)."""
    known = {key: value for key, value in values.items() if key in BY_KEY}
    notices = [f"{_clip(repr(key))} is not an option this server knows; ignored" for key in values
               if key not in BY_KEY]
    return known, notices


def samples_dir(data_dir: Path, value: str, key: str = "outdir_img2img_samples") -> Path:
    """The output folder an option names: relative paths are under the data dir, absolute ones must be too.
    Anything that resolves outside the data dir (.., a symlink out, another root) is refused."""
    root = Path(data_dir).resolve()
    if not isinstance(value, str) or not value.strip():
        raise RequestError(key, f"{value!r} is not a folder name")
    path = Path(value.strip()).expanduser()
    target = (path if path.is_absolute() else root / path).resolve()
    if target != root and root not in target.parents:
        raise RequestError(key, f"{value!r} is outside the data directory {root}; give a folder inside it")
    return target


@dataclass
class AppliedOptions:
    changes: dict[str, Any]  # Img2ImgRequest field -> value
    notices: list[str]  # what was not applied, and why
    checkpoint: Any = None  # sd_model_checkpoint, for the front end to switch to
    vae: Any = None


def apply_options(values: Mapping[str, Any], request_fields: set[str], *, data_dir: Path | None = None,
                  source: str = "override_settings", unknown_notice: bool = True) -> AppliedOptions:
    """Turn option values into Img2ImgRequest changes; everything not applied gets a notice.

    `request_fields`: the fields Img2ImgRequest has (an option whose field is missing is not applied).
    `data_dir`: where output folders must stay (outdir options are refused outside it).
    """
    applied = AppliedOptions({}, [])
    for key, raw in values.items():
        option = BY_KEY.get(key)
        if option is None:
            if unknown_notice:
                applied.notices.append(f"{source}: {_clip(repr(key))} is not an option this server applies; "
                                       "ignored")
            continue
        if raw is None:
            continue
        value = option.check(raw)
        if option.applies == MODEL:
            if key == "sd_model_checkpoint":
                applied.checkpoint = value
            else:
                applied.vae = value
            continue
        if option.applies == IGNORED or option.field not in request_fields:
            if value != option.default:
                applied.notices.append(f"{source}: {key} = {value!r} is not applied by this engine; ignored")
            continue
        if key == "samples_save":  # A1111 saves only when the option AND the request say so
            if not value:
                applied.changes["save_images"] = False
            continue
        if option.kind == "path":
            if data_dir is None:
                continue
            value = samples_dir(data_dir, value, key)
        applied.changes[option.field] = value
    return applied


def ui_options() -> list[Option]:
    """The options the UI's Settings accordion shows, in table order."""
    return [option for option in OPTIONS if option.ui and option.applies == REQUEST]
