"""What every script shares: positional script_args parsing (A1111's order, UI defaults, loud errors), the
context a script may need beyond the request, progress re-numbering over a whole script job, and saving."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import ProgressCallback, ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.outputs import dated_output_dir, save_failure_notice, save_image

Interrogator = Callable[[Image.Image], str]


@dataclass
class ScriptContext:
    """What a script may need besides engine and request; front ends fill what they have."""

    models_dir: Path | None = None  # for SD upscale's upscaler models
    interrogate: Interrogator | None = None  # for Loopback's "append interrogated prompt: CLIP"
    # a pipelines.models.upscalers.UpscalerModels (None: the engine's ModelManager.upscalers)
    upscaler_models: Any = None


# 1. script_args -------------------------------------------------------------------------------------------
def positional(script: str, args: Sequence[Any] | None, count: int) -> list[Any]:
    """script_args padded with None (= "use the default") to `count`; more than `count` is an error."""
    if args is None:
        return [None] * count
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise RequestError("script_args", f"{script}: expected a list of up to {count} values, got {args!r}")
    if len(args) > count:
        raise RequestError("script_args",
                           f"{script}: takes at most {count} values, got {len(args)}: {list(args)!r}")
    return list(args) + [None] * (count - len(args))


def int_arg(script: str, name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON clients send 4.0 for a slider value
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError("script_args", f"{script}: {name} {value!r} is not an integer")
    if not low <= value <= high:
        raise RequestError("script_args", f"{script}: {name} {value} is outside {low}..{high}")
    return value


def float_arg(script: str, name: str, value: Any, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError("script_args", f"{script}: {name} {value!r} is not a number")
    if not low <= value <= high:
        raise RequestError("script_args", f"{script}: {name} {value} is outside {low}..{high}")
    return float(value)


def choice_arg(script: str, name: str, value: Any, default: str, choices: Sequence[str]) -> str:
    """One of `choices`, matched case-insensitively; returned in its canonical spelling."""
    if value is None:
        return default
    if isinstance(value, str):
        for choice in choices:
            if choice.lower() == value.strip().lower():
                return choice
    raise RequestError("script_args", f"{script}: {name} {value!r} is not one of {', '.join(choices)}")


# 2. Progress over a whole script job ----------------------------------------------------------------------
class JobProgress:
    """Re-numbers the engine's per-call progress (job 0 of 1) into the script's job of `job_count` parts."""

    def __init__(self, on_progress: ProgressCallback | None, job_count: int):
        self.on_progress = on_progress
        self.job_count = job_count
        self.started = time.monotonic()

    def starting(self, job: int, text: str) -> None:
        """Report that part `job` begins (before any step: e.g. while interrogating)."""
        if self.on_progress is not None:
            self.on_progress(ProgressUpdate(job=job, job_count=self.job_count, step=0, steps=1,
                                            elapsed=time.monotonic() - self.started, text=text))

    def for_job(self, job: int, text: str) -> ProgressCallback | None:
        if self.on_progress is None:
            return None
        report = self.on_progress

        def forward(update: ProgressUpdate) -> None:
            report(dataclasses.replace(update, job=job, job_count=self.job_count, text=text,
                                       elapsed=time.monotonic() - self.started))
        return forward


# 3. Results -------------------------------------------------------------------------------------------------
def new_result(request: Img2ImgRequest, seed: int, subseed: int, width: int, height: int) -> GenerationResult:
    return GenerationResult(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=seed,
                            subseed=subseed, width=width, height=height)


@dataclass
class Output:
    """One finished image with what the result lists need about it."""

    image: Image.Image
    seed: int
    subseed: int
    infotext: str
    path: Path | None = None
    notice: str | None = None  # why it was not saved (disk full...): the image is returned all the same


def save_output(engine: Any, request: Img2ImgRequest, output: Output, kind: str = "img2img-images") -> Output:
    """Save the image with its infotext when the request saves images (A1111's outputs/<kind>/<date>/)."""
    if request.save_images:
        try:
            output.path = save_image(output.image, output.infotext, dated_output_dir(engine.outputs_root, kind),
                                     output.seed)
        except OSError as exc:
            output.notice = save_failure_notice(exc, Path(engine.outputs_root) / kind)
    return output


def append_output(result: GenerationResult, output: Output) -> None:
    result.images.append(output.image)
    result.seeds.append(output.seed)
    result.subseeds.append(output.subseed)
    result.infotexts.append(output.infotext)
    if output.path is not None:
        result.paths.append(output.path)
    if output.notice is not None and output.notice not in result.notices:
        result.notices.append(output.notice)


DIRECTIONS = ("left", "right", "up", "down")  # outpainting directions, in A1111's order


def directions_arg(script: str, value: Any) -> tuple[str, ...]:
    """Outpainting directions from a list of names (at least one), in canonical order."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise RequestError("script_args", f"{script}: directions must be a list of {', '.join(DIRECTIONS)}")
    chosen = {choice_arg(script, "direction", v, "left", DIRECTIONS) for v in value}
    if not chosen:
        raise RequestError("script_args", f"{script}: choose at least one direction of {', '.join(DIRECTIONS)}")
    return tuple(d for d in DIRECTIONS if d in chosen)


def outpainting_params(script: str, params: Any) -> dict[str, Any]:
    """Infotext keys of the outpainting scripts, so PNG Info can tell which one ran and restore it."""
    keys = {"Script": script, "Outpainting pixels": params.pixels, "Outpainting mask blur": params.mask_blur,
            "Outpainting directions": " ".join(params.directions)}
    if hasattr(params, "noise_q"):  # outpainting mk2
        keys |= {"Outpainting fall-off exponent": params.noise_q,
                 "Outpainting color variation": params.color_variation}
    return keys
