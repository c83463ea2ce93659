"""txt2img widget values <-> Txt2ImgRequest and infotext: pure functions (no Gradio), tested directly.

The shared fields (prompt, sampler, size, seeds...) are read and pasted by ui/values.py's own rules, so both
tabs refuse and paste the same way; the Hires. fix fields are added here, as A1111's txt2img paste reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.fields import RequestError
from pipelines.generation.hires import LATENT_UPSCALE_MODES
from pipelines.generation.txt2img_request import Txt2ImgRequest
from ui.values import FieldUpdates, _as_float, _as_int, fields_from_infotext

USE_SAME_SAMPLER = "Use same sampler"  # A1111's first Hires sampler choice
USE_SAME_SCHEDULER = "Use same scheduler"

TXT2IMG_LABELS: dict[str, str] = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "styles": "Styles",
    "sampler_name": "Sampling method",
    "scheduler": "Schedule type",
    "steps": "Sampling steps",
    "width": "Width",
    "height": "Height",
    "n_iter": "Batch count",
    "batch_size": "Batch size",
    "cfg_scale": "CFG Scale",
    "seed": "Seed",
    "show_extra": "Extra",
    "subseed": "Variation seed",
    "subseed_strength": "Variation strength",
    "enable_hr": "Hires. fix",
    "hr_upscaler": "Upscaler",
    "hr_second_pass_steps": "Hires steps",
    "denoising_strength": "Denoising strength",
    "hr_scale": "Upscale by",
    "hr_resize_x": "Resize width to",
    "hr_resize_y": "Resize height to",
    "hr_sampler_name": "Hires sampling method",
    "hr_scheduler": "Hires schedule type",
    "hr_prompt": "Hires prompt",
    "hr_negative_prompt": "Hires negative prompt",
}
TXT2IMG_FIELDS = tuple(TXT2IMG_LABELS)

# Hires infotext key -> (field, converter), as A1111's txt2img paste fields.
_HIRES_KEYS: dict[str, tuple[str, Any]] = {
    "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires schedule type": ("hr_scheduler", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
}


def upscaler_choices(upscaler_names: list[str]) -> list[str]:
    """The Hires. fix Upscaler dropdown: A1111's latent modes, then every upscaler of SD upscale."""
    return [*LATENT_UPSCALE_MODES, *upscaler_names]


def txt2img_request_from_fields(fields: Mapping[str, Any]) -> Txt2ImgRequest:
    """Build and validate the request; RequestError names the field, the value and the allowed range."""
    extra = bool(fields.get("show_extra"))
    hr_sampler = fields.get("hr_sampler_name")
    hr_scheduler = fields.get("hr_scheduler")
    request = Txt2ImgRequest(
        prompt=fields.get("prompt") or "",
        negative_prompt=fields.get("negative_prompt") or "",
        styles=tuple(fields.get("styles") or ()),
        sampler_name=fields["sampler_name"],
        scheduler=fields["scheduler"],
        steps=_as_int("steps", fields["steps"]),
        width=_as_int("width", fields["width"]),
        height=_as_int("height", fields["height"]),
        n_iter=_as_int("n_iter", fields["n_iter"]),
        batch_size=_as_int("batch_size", fields["batch_size"]),
        cfg_scale=_as_float("cfg_scale", fields["cfg_scale"]),
        seed=_as_int("seed", fields["seed"]),
        subseed=_as_int("subseed", fields["subseed"]) if extra else -1,
        subseed_strength=_as_float("subseed_strength", fields["subseed_strength"]) if extra else 0.0,
        enable_hr=bool(fields.get("enable_hr")),
        hr_upscaler=fields.get("hr_upscaler") or "Latent",
        hr_second_pass_steps=_as_int("hr_second_pass_steps", fields.get("hr_second_pass_steps", 0)),
        denoising_strength=_as_float("denoising_strength", fields.get("denoising_strength", 0.7)),
        hr_scale=_as_float("hr_scale", fields.get("hr_scale", 2.0)),
        hr_resize_x=_as_int("hr_resize_x", fields.get("hr_resize_x", 0)),
        hr_resize_y=_as_int("hr_resize_y", fields.get("hr_resize_y", 0)),
        hr_sampler_name=None if hr_sampler in (None, "", USE_SAME_SAMPLER) else hr_sampler,
        hr_scheduler=None if hr_scheduler in (None, "", USE_SAME_SCHEDULER) else hr_scheduler,
        hr_prompt=fields.get("hr_prompt") or "",
        hr_negative_prompt=fields.get("hr_negative_prompt") or "",
    )
    request.validate()
    return request


def txt2img_fields_from_infotext(parsed: Mapping[str, Any]) -> FieldUpdates:
    """Widget values for the txt2img tab from an infotext (parse_infotext's dict), as A1111's paste: the shared
    keys by img2img's rules, then the Hires. fix keys; "Hires. fix" is ticked when the infotext has them."""
    shared = fields_from_infotext(parsed)
    out = FieldUpdates({k: v for k, v in shared.values.items() if k in TXT2IMG_LABELS}, None,
                       list(shared.warnings))
    for key, (name, convert) in _HIRES_KEYS.items():
        if key not in parsed:
            continue
        try:
            out.values[name] = convert(str(parsed[key]).strip())
        except ValueError:
            out.warnings.append(f"{key}: {parsed[key]!r} is not a number")
    hires = "Denoising strength" in parsed and any(k in parsed for k in ("Hires upscale", "Hires upscaler",
                                                                        "Hires resize-1"))
    out.values["enable_hr"] = hires
    if hires:  # keys A1111 leaves out when they hold the default
        out.values.setdefault("hr_sampler_name", USE_SAME_SAMPLER)
        out.values.setdefault("hr_scheduler", USE_SAME_SCHEDULER)
        out.values.setdefault("hr_prompt", "")
        out.values.setdefault("hr_negative_prompt", "")
        out.values.setdefault("hr_second_pass_steps", 0)
        if "hr_resize_x" not in out.values:
            out.values["hr_resize_x"] = out.values["hr_resize_y"] = 0
    return out


def describe(exc: RequestError) -> str:
    """A RequestError in the words of the txt2img tab's labels."""
    label = TXT2IMG_LABELS.get(exc.field, exc.field)
    return f"{label}: {exc.message}"
