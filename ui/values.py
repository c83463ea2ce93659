"""Pure glue between widget values and the engine's types; no gradio, no torch at import time.

- widget values -> a validated Img2ImgRequest (`request_from_fields`)
- a parsed infotext -> widget values (`fields_from_infotext`, used by PNG Info and "Send to")
- a progress report -> the text under the preview (`progress_text`), with a bar (`progress_html`)
- an ImageEditor value -> the init image (`image_from_editor`)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Mapping

from PIL import Image

from pipelines.fields import (
    RESIZE_MODE_LABELS,
    InpaintArea,
    MaskedContent,
    MaskMode,
    RequestError,
    ResizeMode,
)
from pipelines.generation.progress import ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.options import BY_FIELD, ui_options

# The parameter widgets, in the order the generate handler receives them; labels are A1111's.
FIELD_LABELS: dict[str, str] = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "styles": "Styles",  # saved styles (styles.csv), applied by the engine as the run starts
    "resize_mode": "Resize mode",
    "sampler_name": "Sampling method",
    "scheduler": "Schedule type",
    "steps": "Sampling steps",
    "width": "Width",
    "height": "Height",
    "scale": "Scale",
    "n_iter": "Batch count",
    "batch_size": "Batch size",
    "cfg_scale": "CFG Scale",
    "denoising_strength": "Denoising strength",
    "seed": "Seed",
    "show_extra": "Extra",
    "subseed": "Variation seed",
    "subseed_strength": "Variation strength",
}
# The inpaint controls (shown on the inpaint sub-tabs, ui.inpaint_params) and Color correction.
INPAINT_FIELD_LABELS: dict[str, str] = {
    "mask_blur": "Mask blur",
    "mask_mode": "Mask mode",
    "masked_content": "Masked content",
    "inpaint_area": "Inpaint area",
    "only_masked_padding": "Only masked padding, pixels",
    "mask_grow": "Mask grow/shrink",
    "soft_inpainting": "Soft inpainting",
    "color_correction": "Color correction",
}
FIELD_LABELS.update(INPAINT_FIELD_LABELS)
# The Settings accordion (ui.settings_panel): A1111's per-run options that Img2ImgRequest has a field for.
SETTINGS_OPTIONS = [o for o in ui_options() if o.field in {f.name for f in dataclass_fields(Img2ImgRequest)}]
SETTINGS_FIELD_LABELS: dict[str, str] = {o.field: o.label for o in SETTINGS_OPTIONS}
FIELD_LABELS.update(SETTINGS_FIELD_LABELS)
FIELD_NAMES = tuple(FIELD_LABELS)
# Request fields that are not widgets of the panel, for readable error messages.
_OTHER_LABELS = {"init_image": "Image", "scheduler": "Schedule type", "mask": "Mask", "mask_blur_x": "Mask blur",
                 "mask_blur_y": "Mask blur", "mask_alpha": "Mask transparency", "script_args": "Script"}

MASK_MODE_LABELS = {MaskMode.INPAINT_MASKED: "Inpaint masked", MaskMode.INPAINT_NOT_MASKED: "Inpaint not masked"}
MASK_MODE_CHOICES = tuple(MASK_MODE_LABELS.values())
MASKED_CONTENT_CHOICES = tuple(m.label for m in MaskedContent)  # fill, original, latent noise, latent nothing
INPAINT_AREA_CHOICES = tuple(a.label for a in InpaintArea)  # Whole picture, Only masked

RESIZE_TO, RESIZE_BY = "resize_to", "resize_by"  # the "Resize to" / "Resize by" tabs
RESIZE_MODE_CHOICES = tuple(RESIZE_MODE_LABELS[m] for m in ResizeMode)
_RESIZE_MODE_BY_LABEL = {label: mode for mode, label in RESIZE_MODE_LABELS.items()}


# 1. Widget values -> request ------------------------------------------------------------------------------
def request_from_fields(fields: Mapping[str, Any], init_image: Image.Image | None,
                        resize_tab: str = RESIZE_TO, image_label: str = "img2img") -> Img2ImgRequest:
    """Build and validate the request; RequestError names the field, the value and the allowed range."""
    image = check_image(init_image, image_label)
    if resize_tab == RESIZE_BY:
        from pipelines.images.image_ops import scaled_size

        scale = _as_float("scale", fields["scale"])
        if not 0.05 <= scale <= 4:
            raise RequestError("scale", f"{scale} is outside 0.05..4")
        width, height = scaled_size(image.width, image.height, scale)
    else:
        width, height = _as_int("width", fields["width"]), _as_int("height", fields["height"])
    mode_label = fields["resize_mode"]
    if mode_label not in _RESIZE_MODE_BY_LABEL:
        raise RequestError("resize_mode", f"{mode_label!r} is not one of {', '.join(RESIZE_MODE_CHOICES)}")
    extra = bool(fields.get("show_extra"))
    request = Img2ImgRequest(
        init_image=image,
        prompt=fields.get("prompt") or "",
        negative_prompt=fields.get("negative_prompt") or "",
        styles=tuple(fields.get("styles") or ()),
        width=width,
        height=height,
        resize_mode=_RESIZE_MODE_BY_LABEL[mode_label],
        denoising_strength=_as_float("denoising_strength", fields["denoising_strength"]),
        steps=_as_int("steps", fields["steps"]),
        cfg_scale=_as_float("cfg_scale", fields["cfg_scale"]),
        sampler_name=fields["sampler_name"],
        scheduler=fields["scheduler"],
        seed=_as_int("seed", fields["seed"]),
        # As A1111 1.6+: with "Extra" unticked the variation seed is off, whatever its widgets hold.
        subseed=_as_int("subseed", fields["subseed"]) if extra else -1,
        subseed_strength=_as_float("subseed_strength", fields["subseed_strength"]) if extra else 0.0,
        batch_size=_as_int("batch_size", fields["batch_size"]),
        n_iter=_as_int("n_iter", fields["n_iter"]),
        **inpaint_request_fields(fields),
        **settings_request_fields(fields),
    )
    request.validate()
    return request


def inpaint_request_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The inpaint controls as Img2ImgRequest fields (the engine uses them when the sub-tab gives a mask).
    A caller without any of these widgets gets the request's defaults."""
    if not any(name in fields for name in INPAINT_FIELD_LABELS):
        return {}
    blur = _as_int("mask_blur", fields["mask_blur"])
    return {
        "mask_blur_x": blur,
        "mask_blur_y": blur,
        "mask_mode": MaskMode(_choice_index("mask_mode", fields["mask_mode"], MASK_MODE_CHOICES)),
        "masked_content": MaskedContent(_choice_index("masked_content", fields["masked_content"],
                                                      MASKED_CONTENT_CHOICES)),
        "inpaint_area": InpaintArea(_choice_index("inpaint_area", fields["inpaint_area"], INPAINT_AREA_CHOICES)),
        "only_masked_padding": _as_int("only_masked_padding", fields["only_masked_padding"]),
        "mask_grow": _as_int("mask_grow", fields["mask_grow"]),
        "soft_inpainting": bool(fields["soft_inpainting"]),
        "color_correction": bool(fields["color_correction"]),
    }


def settings_request_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The Settings accordion's values as request fields, checked by their option's rules; a caller without
    these widgets gets the request's defaults."""
    out = {}
    for name in SETTINGS_FIELD_LABELS:
        if name in fields and fields[name] is not None:
            try:
                out[name] = BY_FIELD[name].check(fields[name])
            except RequestError as exc:
                raise RequestError(name, exc.message) from None
    return out


def _choice_index(name: str, label: Any, choices: tuple[str, ...]) -> int:
    """The position of a radio's label among its choices (the enums are declared in the same order)."""
    if label not in choices:
        raise RequestError(name, f"{label!r} is not one of {', '.join(choices)}")
    return choices.index(label)


@dataclass(frozen=True)
class UnreadableImage:
    """What an image input holds when its file could not be decoded (ui.modes' tolerant inputs): the reason.
    Only the active sub-tab's inputs are looked at, so a bad file elsewhere never breaks Generate."""

    reason: str


def unreadable_message(tab: str, what: str = "the uploaded file", reason: str = "") -> str:
    """"the uploaded file in the Inpaint upload tab is not a readable image (...)": the words users see."""
    return (f"{what} in the {tab} tab is not a readable image" + (f" ({reason})" if reason else "")
            + "; upload a PNG, JPEG or WebP picture")


def check_image(image: Any, label: str = "img2img") -> Image.Image:
    """The decoded image, or RequestError("init_image") saying it is missing or unreadable."""
    if image is None:
        raise RequestError("init_image", f"no image in the {label} tab: upload, drop or paste one first")
    if isinstance(image, UnreadableImage):
        raise RequestError("init_image", unreadable_message(label, reason=image.reason))
    if not isinstance(image, Image.Image):
        raise RequestError("init_image", f"expected an image, got {type(image).__name__}")
    try:
        image.load()  # a truncated or corrupt upload fails here, not deep inside the engine
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError("init_image", unreadable_message(label, reason=str(exc))) from None
    return image


def describe_error(exc: RequestError) -> str:
    """"Sampling steps (steps): 200 is outside 1..150" — the label users see, then the API field name."""
    label = FIELD_LABELS.get(exc.field) or _OTHER_LABELS.get(exc.field)
    if label is None or exc.field == "init_image":
        return f"{label or exc.field}: {exc.message}"
    return f"{label} ({exc.field}): {exc.message}"


def _as_int(name: str, value: Any) -> int:
    if value is None or value == "":
        raise RequestError(name, "is empty; enter a whole number")
    if isinstance(value, bool):
        raise RequestError(name, f"{value!r} is not a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise RequestError(name, f"{value} is not a whole number")
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise RequestError(name, f"{value!r} is not a whole number") from None


def _as_float(name: str, value: Any) -> float:
    if value is None or value == "" or isinstance(value, bool):
        raise RequestError(name, f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(name, f"{value!r} is not a number") from None


# 2. Infotext -> widget values ------------------------------------------------------------------------------
@dataclass
class FieldUpdates:
    """What pasting an infotext changes: widget values by field name, the resize tab, and warnings for
    values that could not be used (those widgets are left as they were)."""

    values: dict[str, Any] = field(default_factory=dict)
    resize_tab: str | None = None
    warnings: list[str] = field(default_factory=list)


# infotext key -> (field, converter)
_INFOTEXT_FIELDS: dict[str, tuple[str, Any]] = {
    "Steps": ("steps", int),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Denoising strength": ("denoising_strength", float),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Mask blur": ("mask_blur", int),
    "Masked area padding": ("only_masked_padding", int),
    "Mask grow": ("mask_grow", int),
    "Clip skip": ("clip_skip", int),
    "Conditional mask weight": ("inpainting_mask_weight", float),
    "Noise multiplier": ("initial_noise_multiplier", float),
    "ENSD": ("eta_noise_seed_delta", int),
    "Eta": ("eta", float),
    "RNG": ("randn_source", str),
    "Emphasis": ("emphasis", str),
}
# Keys the engine leaves out when they hold the default; a params line without them means that default
# (for the inpaint keys A1111's paste does the same).
_OMITTED_DEFAULTS = {"Schedule type": "Automatic", "Variation seed strength": "0",
                     "Resize mode": "Just resize", "Mask mode": "Inpaint masked", "Masked content": "original",
                     "Inpaint area": "Whole picture", "Masked area padding": "32", "Mask grow": "0",
                     "Soft inpainting enabled": "False", "Color correction": "False", "Clip skip": "1",
                     "Emphasis": "Original"}
# infotext key -> (field, the radio's choices); a choice may also be given by its index (the API's numbers)
_INFOTEXT_CHOICES = {"Mask mode": ("mask_mode", MASK_MODE_CHOICES),
                     "Masked content": ("masked_content", MASKED_CONTENT_CHOICES),
                     "Inpaint area": ("inpaint_area", INPAINT_AREA_CHOICES)}
# "Soft inpainting enabled" is A1111's key; "Soft inpainting" (this project's older key) is read after it.
_INFOTEXT_FLAGS = {"Soft inpainting enabled": "soft_inpainting", "Soft inpainting": "soft_inpainting",
                   "Color correction": "color_correction"}


def fields_from_infotext(parsed: Mapping[str, Any]) -> FieldUpdates:
    """Widget values for every field the infotext (as parse_infotext returns it) names, as A1111's paste."""
    from pipelines.generation.samplers import SAMPLER_NAMES, SCHEDULE_TYPES, split_legacy_name

    out = FieldUpdates()
    out.values["prompt"] = parsed.get("Prompt", "")
    out.values["negative_prompt"] = parsed.get("Negative prompt", "")
    has_params = any(k not in ("Prompt", "Negative prompt") for k in parsed)
    params = ({**_OMITTED_DEFAULTS, **parsed} if has_params else dict(parsed))
    if "Soft inpainting" in parsed and "Soft inpainting enabled" not in parsed:  # this project's older key
        params.pop("Soft inpainting enabled", None)

    for key, (name, convert) in _INFOTEXT_FIELDS.items():
        if key in params:
            try:
                out.values[name] = convert(str(params[key]).strip())
            except ValueError:
                kind = "whole number" if convert is int else "number"
                out.warnings.append(f"{key}: {params[key]!r} is not a {kind}")
    if "width" in out.values or "height" in out.values:
        out.resize_tab = RESIZE_TO

    if "Sampler" in params:
        base, legacy_schedule = split_legacy_name(str(params["Sampler"]).strip())
        sampler = next((s for s in SAMPLER_NAMES if s.lower() == base.lower()), None)
        if sampler is None:
            valid = ", ".join(SAMPLER_NAMES)
            out.warnings.append(f"Sampler: {params['Sampler']!r} is unknown; valid: {valid}")
        else:
            out.values["sampler_name"] = sampler
            if legacy_schedule and "Schedule type" not in parsed:
                out.values["scheduler"] = legacy_schedule
    if "Schedule type" in params and "scheduler" not in out.values:
        wanted = str(params["Schedule type"]).lower()
        schedule = next((t for t in SCHEDULE_TYPES if t.lower() == wanted), None)
        if schedule is None:
            out.warnings.append(f"Schedule type: {params['Schedule type']!r} is unknown")
        else:
            out.values["scheduler"] = schedule
    if "Resize mode" in params:
        mode = str(params["Resize mode"])
        if mode in _RESIZE_MODE_BY_LABEL:
            out.values["resize_mode"] = mode
        elif mode.isdigit() and int(mode) in ResizeMode._value2member_map_:
            out.values["resize_mode"] = RESIZE_MODE_LABELS[ResizeMode(int(mode))]
        else:
            out.warnings.append(f"Resize mode: {mode!r} is not one of {', '.join(RESIZE_MODE_CHOICES)}")
    if "subseed_strength" in out.values:
        out.values["show_extra"] = out.values["subseed_strength"] > 0
    _paste_inpaint_fields(params, out)
    return out


def _paste_inpaint_fields(params: Mapping[str, Any], out: FieldUpdates) -> None:
    """The inpaint keys: radios by label (any case) or index, checkboxes by True/False; one Mask blur
    slider stands for A1111's separate "Mask blur x" / "Mask blur y"."""
    for key, (name, choices) in _INFOTEXT_CHOICES.items():
        if key not in params:
            continue
        text = str(params[key]).strip()
        label = next((c for c in choices if c.lower() == text.lower()), None)
        if label is None and text.isdigit() and int(text) < len(choices):
            label = choices[int(text)]
        if label is None:
            out.warnings.append(f"{key}: {text!r} is not one of {', '.join(choices)}")
        else:
            out.values[name] = label
    for key, name in _INFOTEXT_FLAGS.items():
        if key in params:
            text = str(params[key]).strip().lower()
            if text in ("true", "false"):
                out.values[name] = text == "true"
            else:
                out.warnings.append(f"{key}: {params[key]!r} is not True or False")
    if "mask_blur" not in out.values and "Mask blur x" in params:
        text_x = str(params["Mask blur x"]).strip()
        text_y = str(params.get("Mask blur y", text_x)).strip()
        try:
            blur_x, blur_y = int(text_x), int(text_y)
        except ValueError:
            out.warnings.append(f"Mask blur x/y: {text_x!r}, {text_y!r} are not whole numbers")
            return
        out.values["mask_blur"] = blur_x
        if blur_y != blur_x:
            out.warnings.append(f"Mask blur y: {blur_y} differs from x ({blur_x}); the one Mask blur slider "
                                f"takes {blur_x}")


# 3. Progress -> text ----------------------------------------------------------------------------------------
def progress_text(update: ProgressUpdate) -> str:
    """"step 5/15, batch 1/2, ETA 3s" (plus a script's own text, e.g. "tile 3/9")."""
    parts = [f"step {update.step}/{update.steps}", f"batch {update.job + 1}/{update.job_count}"]
    if update.text:
        parts.append(update.text)
    parts.append(f"ETA {format_seconds(update.eta)}")
    return ", ".join(parts)


def progress_html(update: ProgressUpdate) -> str:
    """The progress line as a real bar (the whole run's fraction) with the text and ETA under it."""
    percent = round(100 * update.fraction)
    return (f'<progress class="img2img-progress-bar" value="{percent}" max="100" title="{percent}%"></progress>'
            f"\n\n{progress_text(update)}")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def finished_text(n_images: int, elapsed: float, interrupted: bool, skipped: int, notices: list[str]) -> str:
    """The line shown when a run ends."""
    what = f"{n_images} image{'s' if n_images != 1 else ''}"
    text = f"Interrupted: {what} kept" if interrupted else f"Done: {what}"
    text += f". Time taken: {elapsed:.1f} s"
    if skipped:
        text += f"; {skipped} batch{'es' if skipped != 1 else ''} skipped"
    return "\n".join([text + "."] + list(notices))


# 4. Images --------------------------------------------------------------------------------------------------
def image_from_editor(value: Mapping[str, Any] | None) -> Image.Image | None:
    """The init image from a gr.ImageEditor value {"background", "layers", "composite"}: the composite (the
    upload with the strokes painted on it). An editor with no upload and no strokes gives None."""
    if not value:
        return None
    background, composite = value.get("background"), value.get("composite")
    if background is None and not any(_has_paint(layer) for layer in value.get("layers") or []):
        return None  # the empty canvas the editor always sends
    return composite if composite is not None else background


def _has_paint(layer: Any) -> bool:
    if not isinstance(layer, Image.Image):
        return layer is not None
    if "A" not in layer.getbands():
        return True
    return layer.getchannel("A").getextrema()[1] > 0


def image_of_value(value: Any) -> Image.Image | None:
    """The image a sub-tab's image widget holds: a plain image, or an ImageEditor value's composite."""
    if isinstance(value, dict):
        return image_from_editor(value)
    return value if isinstance(value, Image.Image) else None


def scale_text(size: tuple[int, int] | None, scale: float | None) -> str:
    """The "Resize by" note: the size an image of `size` will be resized to."""
    if size is None or not scale:
        return "Resize by: the size follows from the image (shown here once it is known)"
    from pipelines.images.image_ops import scaled_size

    width, height = scaled_size(size[0], size[1], float(scale))
    return f"Resize by: from {size[0]}x{size[1]} to {width}x{height}"
