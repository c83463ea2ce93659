"""alwayson_scripts: the always-on scripts A1111 ships that this engine runs. Today one, "Soft Inpainting"
(A1111's extensions-builtin/soft-inpainting), with A1111's positional args:

    [enabled, schedule bias, preservation strength, transition contrast boost, mask influence,
     difference threshold, difference contrast]

"enabled" turns on this engine's soft inpainting (the blurred mask sets how much each pixel may change). The
six tuning values belong to A1111's own blend (per-step latent interpolation with a magnitude correction,
then a difference-based pixel composite), which this engine does not run: values other than A1111's defaults
are accepted and named in a notice. A value that is not a number is a 422 (it would otherwise be misread);
an always-on script that is not installed is a 422 too, as in A1111.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from api.errors import field_error

SOFT_INPAINTING = "Soft Inpainting"
ALWAYSON_TITLES = (SOFT_INPAINTING,)


@dataclass(frozen=True)
class _Arg:
    label: str
    default: float
    minimum: float
    maximum: float


# A1111's sliders (label, default, range), after the "enabled" checkbox.
SOFT_INPAINTING_ARGS = (
    _Arg("Schedule bias", 1.0, 0.0, 8.0),
    _Arg("Preservation strength", 0.5, 0.0, 8.0),
    _Arg("Transition contrast boost", 4.0, 1.0, 32.0),
    _Arg("Mask influence", 0.0, 0.0, 1.0),
    _Arg("Difference threshold", 0.5, 0.0, 8.0),
    _Arg("Difference contrast", 2.0, 0.0, 8.0),
)


@dataclass
class AlwaysOn:
    changes: dict[str, Any]  # Img2ImgRequest field -> value
    notices: list[str]


def parse_alwayson(scripts: dict[str, Any] | None) -> AlwaysOn:
    """{"Soft Inpainting": {"args": [...]}} -> request changes and notices; 422 for unknown scripts."""
    out = AlwaysOn({}, [])
    for name, value in (scripts or {}).items():
        if not isinstance(name, str) or name.strip().lower() != SOFT_INPAINTING.lower():
            known = ", ".join(repr(t) for t in ALWAYSON_TITLES)
            raise field_error("alwayson_scripts", f"always-on script {name!r} not found; known: {known}")
        _soft_inpainting(value, out)
    return out


def _soft_inpainting(value: Any, out: AlwaysOn) -> None:
    field = f"alwayson_scripts.{SOFT_INPAINTING}.args"
    args = value.get("args", []) if isinstance(value, dict) else value
    if not isinstance(args, list):
        raise field_error(field, f"{args!r} is not a list")
    if len(args) > 1 + len(SOFT_INPAINTING_ARGS):
        raise field_error(field, f"{len(args)} values; A1111's Soft Inpainting takes at most 7")
    if not args:
        return  # A1111: the script's defaults, i.e. disabled
    enabled = args[0]
    if not isinstance(enabled, (bool, int)) or isinstance(enabled, float):
        raise field_error(f"{field}[0]", f"{enabled!r} is not true or false (enabled)")
    out.changes["soft_inpainting"] = bool(enabled)
    unused = []
    for index, (spec, raw) in enumerate(zip(SOFT_INPAINTING_ARGS, args[1:]), start=1):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise field_error(f"{field}[{index}]", f"{raw!r} is not a number ({spec.label})")
        if not spec.minimum <= raw <= spec.maximum:
            limits = f"{spec.minimum:g}..{spec.maximum:g}"
            raise field_error(f"{field}[{index}]", f"{raw} is outside {limits} ({spec.label})")
        if raw != spec.default:
            unused.append(f"{spec.label} {raw:g}")
    if unused and enabled:
        out.notices.append(
            f"{SOFT_INPAINTING}: {', '.join(unused)} not applied: this engine's soft inpainting lets each pixel "
            "change in proportion to the blurred mask and has no such setting")
