"""Loopback (A1111 scripts/loopback.py): feed each output back in as the next init image.

For each of n_iter batches: start from the original init image and the initial denoising strength, run
`loops` single-image img2img passes, each with seed + 1 (seeds keep counting across batches), the strength
moving along the chosen curve towards the final strength, masked content switched to "original" after the
first pass (the mask then covers already generated pixels), and optionally ", <interrogated caption>"
appended to the prompt. Outputs: a one-row grid of the returned images when there is more than one, first (as A1111
returns it), then every loop's image when n_iter is 1, else the last image of each batch (A1111's choice).

Colour correction (off by default, as A1111's img2img_color_correction; on with the script's checkbox or
the request's color_correction) matches every output to the ORIGINAL init image's colours, not to the
previous loop's output, so colours cannot drift loop after loop. The engine applies it before the inpaint
composite, as A1111 does, so pixels outside a mask stay the original's.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from pipelines.fields import MaskedContent, RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.noise import resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images import image_ops
from pipelines.images.tiles import make_image_grid
from pipelines.options import color_rgb
from scripts.common import (
    JobProgress,
    Output,
    ScriptContext,
    append_output,
    choice_arg,
    float_arg,
    int_arg,
    new_result,
    positional,
    save_output,
)

TITLE = "Loopback"


class DenoisingCurve(str, enum.Enum):
    AGGRESSIVE = "Aggressive"
    LINEAR = "Linear"
    LAZY = "Lazy"


class AppendInterrogation(str, enum.Enum):
    NONE = "None"
    CLIP = "CLIP"
    DEEPBOORU = "DeepBooru"


@dataclass(frozen=True)
class LoopbackParams:
    loops: int = 4
    final_denoising_strength: float = 0.5
    denoising_curve: DenoisingCurve = DenoisingCurve.LINEAR
    append_interrogation: AppendInterrogation = AppendInterrogation.NONE
    color_correction: bool = False  # against the original init image (also on when the request asks for it)

    def __post_init__(self) -> None:
        for name in ("loops", "final_denoising_strength", "denoising_curve", "append_interrogation"):
            if getattr(self, name) is None:
                raise RequestError("script_args", f"{TITLE}: {name.replace('_', ' ')} is missing")
        int_arg(TITLE, "loops", self.loops, 4, 1, 32)
        float_arg(TITLE, "final denoising strength", self.final_denoising_strength, 0.5, 0.0, 1.0)
        if not isinstance(self.denoising_curve, DenoisingCurve):
            curve, notice = parse_curve(self.denoising_curve)
            object.__setattr__(self, "denoising_curve", curve)
            # Not a field (each field is a UI control): what was taken leniently, for the run's notices.
            object.__setattr__(self, "_notices", (notice,) if notice else ())
        for name, kind in (("append_interrogation", AppendInterrogation),):
            value = getattr(self, name)
            if not isinstance(value, kind):  # a plain string from a UI: canonical spelling, or an error
                canonical = choice_arg(TITLE, name.replace("_", " "), value, None, [m.value for m in kind])
                object.__setattr__(self, name, kind(canonical))

    @property
    def notices(self) -> tuple[str, ...]:
        """What was taken leniently (an unknown curve as Linear), said with the result."""
        return self.__dict__.get("_notices", ())

    @classmethod
    def from_script_args(cls, args: list[Any] | None) -> "LoopbackParams":
        """A1111's positional order:
        [loops, final_denoising_strength, denoising_curve, append_interrogation]."""
        loops, final, curve, interrogation = positional(TITLE, args, 4)
        return cls(
            loops=int_arg(TITLE, "loops", loops, 4, 1, 32),
            final_denoising_strength=float_arg(TITLE, "final denoising strength", final, 0.5, 0.0, 1.0),
            denoising_curve="Linear" if curve is None else curve,  # checked (leniently) by __post_init__
            append_interrogation=AppendInterrogation(choice_arg(
                TITLE, "append interrogated prompt", interrogation, "None",
                [a.value for a in AppendInterrogation])),
        )


PARAMS = LoopbackParams  # what scripts.registry.run_with_params dispatches on


def parse_script_args(args: list[Any] | None, context: ScriptContext | None = None) -> LoopbackParams:
    return LoopbackParams.from_script_args(args)


def parse_curve(value: Any) -> tuple[DenoisingCurve, str | None]:
    """A curve by name (any case). A1111 takes anything but "Aggressive" and "Lazy" as Linear: so do we, with
    a notice saying so."""
    if isinstance(value, str):
        for curve in DenoisingCurve:
            if curve.value.lower() == value.strip().lower():
                return curve, None
    choices = ", ".join(c.value for c in DenoisingCurve)
    return DenoisingCurve.LINEAR, f"{TITLE}: denoising curve {value!r} is not one of {choices}; Linear was used"


def loop_strengths(initial: float, final: float, loops: int, curve: DenoisingCurve) -> list[float]:
    """The denoising strength of each loop (A1111 calculate_denoising_strength): the first loop uses the
    initial strength, the last the final one, in between the curve of the loop fraction t = i / (loops - 1):
    Linear t, Aggressive sin(t pi/2) (moves early), Lazy 1 - cos(t pi/2) (moves late)."""
    if loops == 1:
        return [initial]
    shapes = {
        DenoisingCurve.LINEAR: lambda t: t,
        DenoisingCurve.AGGRESSIVE: lambda t: math.sin(t * math.pi * 0.5),
        DenoisingCurve.LAZY: lambda t: 1 - math.cos(t * math.pi * 0.5),
    }
    shape = shapes[DenoisingCurve(curve)]
    # Rounded to 12 places so that e.g. 0.75 -> 0.3 ends on 0.3, not 0.30000000000000004, in the infotext.
    return [round(initial + (final - initial) * shape(i / (loops - 1)), 12) for i in range(loops)]


def run(engine: Any, request: Img2ImgRequest, params: LoopbackParams,
        on_progress: ProgressCallback | None = None, control: JobControl | None = None,
        context: ScriptContext | None = None) -> GenerationResult:
    # 1. Validate everything before any work; the caller's request is never modified.
    base = request.replace(return_grid=False, grid_save=False)  # A1111's do_not_save_grid: no grid per call
    base.validate()
    job = _LoopbackJob(engine, base, params, _interrogator(params, context or ScriptContext()),
                       control or JobControl(), JobProgress(on_progress, params.loops * base.n_iter))
    seed, subseed = resolve_seed(base.seed), resolve_seed(base.subseed)
    job.result = new_result(base, seed, subseed, base.width, base.height)
    job.result.notices.extend(params.notices)

    # 2. Batches of loops: every loop's image when there is one batch, else each batch's last image.
    returned: list[Output] = []
    loop_seed = seed
    for batch in range(base.n_iter):
        outputs, loop_seed, finished = job.batch(batch, loop_seed, subseed)
        returned += outputs if base.n_iter == 1 else outputs[-1:] if finished else []
        if job.result.interrupted:
            break

    # 3. A one-row grid of the returned images first (A1111's order), then the images.
    if len(returned) > 1:
        first = returned[0]
        grid = Output(make_image_grid([o.image for o in returned], rows=1), first.seed, first.subseed,
                      first.infotext)
        append_output(job.result, save_output(engine, base, grid, kind="img2img-grids"))
    for output in returned:
        append_output(job.result, output)
    return job.result


class _LoopbackJob:
    """What every loop of a run shares; `batch` runs one batch's loops."""

    def __init__(self, engine: Any, base: Img2ImgRequest, params: LoopbackParams, interrogate: Any,
                 control: JobControl, progress: JobProgress):
        self.engine, self.base, self.params = engine, base, params
        self.interrogate, self.control, self.progress = interrogate, control, progress
        self.strengths = loop_strengths(base.denoising_strength, params.final_denoising_strength,
                                        params.loops, params.denoising_curve)
        self.extra = {**base.extra_generation_params,
                      "Final denoising strength": params.final_denoising_strength,
                      "Denoising curve": params.denoising_curve.value}
        # Every loop is matched to the ORIGINAL's colours (A1111 too), so colours cannot drift.
        self.color_correction = params.color_correction or base.color_correction
        self.result = GenerationResult()

    def batch(self, batch: int, loop_seed: int, subseed: int) -> tuple[list[Output], int, bool]:
        """Run one batch's loops from the original image; returns (outputs, next seed, all loops done)."""
        base, loops, outputs = self.base, self.params.loops, []
        init, fill = base.init_image, base.masked_content
        for i in range(loops):
            job, text = batch * loops + i, f"Iteration {i + 1}/{loops}, batch {batch + 1}/{base.n_iter}"
            self.progress.starting(job, text)
            prompt = base.prompt
            if self.interrogate is not None and not self.control.interrupted:  # every loop's input
                caption = self.interrogate(image_ops.flatten_onto(init, color_rgb(base.background_color)))
                prompt = f"{base.prompt}, {caption}" if base.prompt else caption
            if self.control.interrupted:
                self.result.interrupted = True
                return outputs, loop_seed, False
            loop_request = base.replace(
                init_image=init, batch_images=(), prompt=prompt, seed=loop_seed, subseed=subseed,
                batch_size=1, n_iter=1, denoising_strength=self.strengths[i], masked_content=fill,
                extra_generation_params=self.extra, color_correction=self.color_correction,
                color_reference_image=base.init_image if self.color_correction else None,
                save_images=False)  # saved below, in the script's own output folders
            out = self.engine.img2img(loop_request, self.progress.for_job(job, text), self.control)
            if out.interrupted:
                self.result.interrupted = True
                return outputs, loop_seed, False
            loop_seed += 1
            if not out.images:  # Skip: A1111 abandons the rest of this batch's loops
                self.result.skipped_batches += 1
                return outputs, loop_seed, False
            image = out.images[0]
            outputs.append(save_output(self.engine, base,
                                       Output(image, out.seeds[0], out.subseeds[0], out.infotexts[0])))
            init, fill = image, MaskedContent.ORIGINAL  # the mask now covers generated pixels
        return outputs, loop_seed, True


def _interrogator(params: LoopbackParams, context: ScriptContext):
    if params.append_interrogation is AppendInterrogation.NONE:
        return None
    if params.append_interrogation is AppendInterrogation.CLIP:
        if context.interrogate is None:
            raise RequestError("script_args", "Loopback: append interrogated prompt 'CLIP' needs the CLIP "
                                              "interrogator, which is not available")
        return context.interrogate
    raise RequestError("script_args", "Loopback: append interrogated prompt 'DeepBooru' is not available "
                                      "(no DeepBooru interrogator); use 'CLIP' or 'None'")

