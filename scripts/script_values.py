"""The scripts' controls, declared once (no gradio): the UI's Script panel and /sdapi/v1/script-info read them.

- what each script's controls are (`SCRIPT_SPECS`: one Control per field of the script's params dataclass,
  the widget's default taken from the dataclass default)
- the panel's widget values -> the script's params dataclass (`params_from_values`), RequestError when wrong
- a parsed infotext -> the script it names and its control values (`script_from_infotext`)
- which script a sub-tab selects (`script_for_tab`)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.fields import MaskedContent, RequestError
from scripts import loopback, outpainting_mk2, outpainting_poor_man, sd_upscale
from scripts.registry import script_titles

NO_SCRIPT = "None"
INTERROGATION_CHOICES = ("None", "CLIP")  # no DeepBooru interrogator in this project


@dataclass(frozen=True)
class Control:
    """One widget of a script's panel, bound to the params dataclass field `name`."""

    name: str
    label: str
    kind: str  # "slider", "radio", "checkbox", "directions" (checkbox group); "upscaler": the upscaler radio
    minimum: float = 0
    maximum: float = 1
    step: float = 1
    choices: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        """A slider of whole numbers (its params field is an int)."""
        return self.kind == "slider" and float(self.step).is_integer() and float(self.minimum).is_integer()


@dataclass(frozen=True)
class ScriptSpec:
    title: str  # as scripts.registry lists it
    params_type: type
    controls: tuple[Control, ...]  # in display order; one per field of params_type
    hint: str = ""  # shown above the controls
    key: str = ""  # short name for elem_ids: "script_<key>_<field>"
    # params fields with no control of their own: their dataclass default is used (a control elsewhere in the
    # page already stands for them)
    hidden: tuple[str, ...] = ()

    def default(self, name: str) -> Any:
        """The widget's default: the params dataclass's own default for that field."""
        value = {f.name: f.default for f in dataclasses.fields(self.params_type)}[name]
        if isinstance(value, MaskedContent):
            return value.label
        if hasattr(value, "value") and isinstance(value.value, str):  # a str enum
            return value.value
        return list(value) if isinstance(value, tuple) else value

    def control(self, name: str) -> Control:
        return next(c for c in self.controls if c.name == name)


_DIRECTIONS = tuple(outpainting_poor_man.DIRECTIONS)
SCRIPT_SPECS: dict[str, ScriptSpec] = {spec.title: spec for spec in (
    ScriptSpec(loopback.TITLE, loopback.LoopbackParams, (
        Control("loops", "Loops", "slider", 1, 32, 1),
        Control("final_denoising_strength", "Final denoising strength", "slider", 0, 1, 0.01),
        Control("denoising_curve", "Denoising strength curve", "radio",
                choices=tuple(c.value for c in loopback.DenoisingCurve)),
        Control("append_interrogation", "Append interrogated prompt at each iteration", "radio",
                choices=INTERROGATION_CHOICES),
        # One "Color correction" on the page: the parameter panel's (the request's color_correction), which
        # Loopback honours for every loop; the script's own flag stays for callers of the engine.
    ), key="loopback", hidden=("color_correction",)),
    ScriptSpec(outpainting_mk2.TITLE, outpainting_mk2.OutpaintingMk2Params, (
        Control("pixels", "Pixels to expand", "slider", 8, 256, 8),
        Control("mask_blur", "Mask blur", "slider", 0, 64, 1),
        Control("directions", "Outpainting direction", "directions", choices=_DIRECTIONS),
        Control("noise_q", "Fall-off exponent (lower=higher detail)", "slider", 0, 4, 0.01),
        Control("color_variation", "Color variation", "slider", 0, 1, 0.01),
    ), hint="Recommended settings: Sampling steps 80-100, Sampler Euler a, Denoising strength 0.8. "
            "One side at a time; the new area starts from noise matched to the picture.", key="mk2"),
    ScriptSpec(outpainting_poor_man.TITLE, outpainting_poor_man.PoorManOutpaintingParams, (
        Control("pixels", "Pixels to expand", "slider", 8, 256, 8),
        Control("mask_blur", "Mask blur", "slider", 0, 64, 1),
        Control("masked_content", "Masked content", "radio",
                choices=tuple(outpainting_poor_man.MASKED_CONTENT_LABELS)),
        Control("directions", "Outpainting direction", "directions", choices=_DIRECTIONS),
    ), hint="Recipe: a prompt matching the picture, denoising and CFG at max, 50-100 steps, Euler a or "
            "DPM2 a. Width and height are the tile size; pixels to expand must be smaller.",
        key="poor_man"),
    ScriptSpec(sd_upscale.TITLE, sd_upscale.SdUpscaleParams, (
        Control("overlap", "Tile overlap", "slider", 0, 256, 16),
        Control("scale", "Scale Factor", "slider", 1, 4, 0.05),
        Control("upscaler", "Upscaler", "upscaler"),
    ), hint="Will upscale the image by the selected scale factor; use width and height sliders to set tile "
            "size", key="sd_upscale"),
)}
SCRIPT_CHOICES = (NO_SCRIPT, *script_titles())
assert set(SCRIPT_SPECS) == set(script_titles()), "a script without a UI spec (or a spec without a script)"
for _spec in SCRIPT_SPECS.values():  # every params field has exactly one control (or is hidden), no control more
    assert sorted([c.name for c in _spec.controls] + list(_spec.hidden)) == sorted(
        f.name for f in dataclasses.fields(_spec.params_type)), _spec.title

# Every control of every script, in the order the generate handler receives their values (after the dropdown).
ALL_CONTROLS: tuple[tuple[str, Control], ...] = tuple(
    (spec.title, control) for spec in SCRIPT_SPECS.values() for control in spec.controls)


# 1. Widget values -> params -------------------------------------------------------------------------------
def split_values(values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """[dropdown, *every control's value in ALL_CONTROLS order] -> (script title, {field: value} of that
    script). No values at all (a caller that knows nothing of scripts) means no script."""
    if not values:
        return NO_SCRIPT, {}
    title, rest = values[0], values[1:]
    if len(rest) != len(ALL_CONTROLS):
        raise ValueError(f"expected {len(ALL_CONTROLS)} script control values, got {len(rest)}")
    if title in (None, "", NO_SCRIPT):
        return NO_SCRIPT, {}
    return title, {c.name: v for (owner, c), v in zip(ALL_CONTROLS, rest) if owner == title}


def params_from_values(title: str, values: Mapping[str, Any]) -> Any:
    """The script's params dataclass from its widgets' values; RequestError("script_args") names the control
    and the allowed values. None for "None"."""
    if title in (None, "", NO_SCRIPT):
        return None
    spec = SCRIPT_SPECS.get(title)
    if spec is None:
        raise RequestError("script_args", f"unknown script {title!r}; known: {', '.join(SCRIPT_SPECS)}")
    kwargs = {}
    for control in spec.controls:
        value = values.get(control.name)
        if value is None:
            raise RequestError("script_args", f"{title}: {control.label} is empty")
        kwargs[control.name] = _convert(spec, control, value)
    return spec.params_type(**kwargs)


def _convert(spec: ScriptSpec, control: Control, value: Any) -> Any:
    if control.kind == "slider":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RequestError("script_args", f"{spec.title}: {control.label} {value!r} is not a number") \
                from None
        if control.whole:
            if not number.is_integer():
                raise RequestError("script_args",
                                   f"{spec.title}: {control.label} {value!r} is not a whole number")
            return int(number)
        return number
    if control.kind == "checkbox":
        return bool(value)
    if control.kind == "directions":
        return tuple(value)
    return str(value)


# 2. Infotext -> script -------------------------------------------------------------------------------------
@dataclass
class ScriptUpdates:
    """What pasting an infotext changes in the script panel."""

    title: str | None = None  # the script the infotext names (None: it names none)
    values: dict[tuple[str, str], Any] = field(default_factory=dict)  # (script title, field) -> widget value
    warnings: list[str] = field(default_factory=list)


def script_from_infotext(parsed: Mapping[str, Any], upscalers: Sequence[str] = ()) -> ScriptUpdates:
    """The script an infotext (as parse_infotext returns it) was made with, and the controls it names.

    Loopback writes "Final denoising strength" and "Denoising curve" (and "Color correction" when on);
    SD upscale writes "SD upscale overlap" and "SD upscale upscaler" (loops and scale factor are not
    recorded, as in A1111). The outpainting scripts write "Script" and their "Outpainting ..." keys.
    `upscalers`: the names the Upscaler radio offers now.
    """
    out = ScriptUpdates()
    _outpainting_from_infotext(out, parsed)
    if "Final denoising strength" in parsed or "Denoising curve" in parsed:
        title = loopback.TITLE
        out.title = title
        _number(out, parsed, "Final denoising strength", (title, "final_denoising_strength"), float, 0, 1)
        if "Denoising curve" in parsed:
            curve = str(parsed["Denoising curve"]).strip()
            canonical = next((c.value for c in loopback.DenoisingCurve if c.value.lower() == curve.lower()),
                             None)
            if canonical is None:
                choices = ", ".join(c.value for c in loopback.DenoisingCurve)
                out.warnings.append(f"Denoising curve: {curve!r} is not one of {choices}")
            else:
                out.values[(title, "denoising_curve")] = canonical
        # "Color correction: True" is pasted into the parameter panel's checkbox (ui.values), which Loopback uses.
    if "SD upscale overlap" in parsed or "SD upscale upscaler" in parsed:
        title = sd_upscale.TITLE
        out.title = title
        _number(out, parsed, "SD upscale overlap", (title, "overlap"), int, 0, 256)
        if "SD upscale upscaler" in parsed:
            name = str(parsed["SD upscale upscaler"]).strip()
            known = next((u for u in upscalers if u.lower() == name.lower()), None)
            if known is None:
                out.warnings.append(f"SD upscale upscaler: {name!r} is not installed here; known: "
                                    f"{', '.join(upscalers)}")
            else:
                out.values[(title, "upscaler")] = known
    return out


_OUTPAINTING_NUMBERS = (("Outpainting pixels", "pixels", int, 8, 256),
                        ("Outpainting mask blur", "mask_blur", int, 0, 64),
                        ("Outpainting fall-off exponent", "noise_q", float, 0, 4),
                        ("Outpainting color variation", "color_variation", float, 0, 1))


def _outpainting_from_infotext(out: ScriptUpdates, parsed: Mapping[str, Any]) -> None:
    title = str(parsed.get("Script", "")).strip()
    if title not in (outpainting_poor_man.TITLE, outpainting_mk2.TITLE):
        return
    out.title = title
    fields = {c.name for c in SCRIPT_SPECS[title].controls}
    for key, name, kind, low, high in _OUTPAINTING_NUMBERS:
        if name in fields:
            _number(out, parsed, key, (title, name), kind, low, high)
    if "Outpainting directions" in parsed:
        chosen = [d for d in str(parsed["Outpainting directions"]).split() if d in _DIRECTIONS]
        if chosen:
            out.values[(title, "directions")] = chosen


def _number(out: ScriptUpdates, parsed: Mapping[str, Any], key: str, target: tuple[str, str], kind: type,
            low: float, high: float) -> None:
    if key not in parsed:
        return
    text = str(parsed[key]).strip()
    try:
        value = kind(text)
    except ValueError:
        out.warnings.append(f"{key}: {text!r} is not a {'whole number' if kind is int else 'number'}")
        return
    if not low <= value <= high:
        out.warnings.append(f"{key}: {value} is outside {low}..{high}")
        return
    out.values[target] = value


# 3. Sub-tabs that stand for a script ------------------------------------------------------------------------
def script_for_tab(tab_script: str | None, current: str, pinned: bool | str, keep: Sequence[str] = ()
                   ) -> tuple[str | None, bool | str]:
    """The Script dropdown's value after a sub-tab is chosen, and whether a tab chose it ("pinned").

    A script tab (tab_script set) selects its script, unless the dropdown already holds it or one of `keep`
    (the Outpaint tab keeps "Outpainting mk2" when the user picked it); it remembers what the user had chosen
    ("pinned" holds that title). A plain tab puts the user's own choice back when a script tab had changed
    it; a script the user chose in the dropdown stays. None for the value means: leave the dropdown as it is.
    `pinned`: False (no tab changed the dropdown), the title to restore, or True (restore None).
    """
    if tab_script is not None:
        if current in keep or current == tab_script:
            return None, pinned  # already there: nothing changed, nothing to undo later
        return tab_script, (pinned or current or NO_SCRIPT)
    if pinned:
        return (NO_SCRIPT if pinned is True else pinned), False
    return None, False
