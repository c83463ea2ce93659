"""A1111 sampler and schedule-type names -> diffusers schedulers (a name -> factory registry)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers

from pipelines.fields import RequestError
from pipelines.generation import schedules
from pipelines.generation.schedules import DiscreteSigmas, RunSchedule
from pipelines.models.explicit_schedulers import explicit_scheduler

# A1111's schedule types, in its order (Automatic = the sampler's own default, below).
SCHEDULE_TYPES = ("Automatic",) + tuple(schedules.SCHEDULES)
K_DIFFUSION, TIMESTEPS, LCM = "k-diffusion", "timesteps", "lcm"  # how A1111 runs the sampler
# diffusers schedulers that interleave midpoints with the steps: the schedule must end at sigma 0.
_INTERLEAVED = {"HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                "DPMSolverSDEScheduler"}


@dataclass(frozen=True)
class SamplerSpec:
    name: str  # A1111's name
    scheduler_class: str  # diffusers class name
    options: dict[str, Any] = field(default_factory=dict)
    default_schedule: str = "Uniform"  # what "Automatic" means for this sampler (A1111's samplers_k_diffusion)
    aliases: tuple[str, ...] = ()
    kind: str = K_DIFFUSION
    discard_penultimate: bool = False  # A1111's discard_next_to_last_sigma

    @property
    def schedule_types(self) -> tuple[str, ...]:
        """Schedule types this sampler honours: every A1111 schedule for k-diffusion samplers (A1111's DDIM,
        PLMS, UniPC and LCM run their own timesteps), KL Optimal (ends above 0) only where the scheduler keeps
        one sigma per step."""
        if self.kind != K_DIFFUSION:
            return ("Automatic", "Uniform")
        types = SCHEDULE_TYPES
        return tuple(t for t in types if not (t == "KL Optimal" and self.scheduler_class in _INTERLEAVED))


_SDE2 = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                "Karras", ("k_dpmpp_2m",)),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, "Karras", ("k_dpmpp_sde",)),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE2, "Exponential", ("k_dpmpp_2m_sde",)),
    SamplerSpec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", {**_SDE2, "solver_type": "heun"},
                "Exponential", ("k_dpmpp_2m_sde_heun",)),
    SamplerSpec("DPM++ 2S a", "DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                "Karras", ("k_dpmpp_2s_a",)),
    SamplerSpec("DPM++ 3M SDE", "DPMSolverMultistepScheduler",
                {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, "Exponential", ("k_dpmpp_3m_sde",),
                discard_penultimate=True),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, "Uniform", ("k_euler_a", "k_euler_ancestral")),
    SamplerSpec("Euler", "EulerDiscreteScheduler", {}, "Uniform", ("k_euler",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", {}, "Uniform", ("k_lms",)),
    SamplerSpec("Heun", "HeunDiscreteScheduler", {}, "Uniform", ("k_heun",)),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {}, "Karras", ("k_dpm_2",), discard_penultimate=True),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, "Karras", ("k_dpm_2_a",), discard_penultimate=True),
    SamplerSpec("DDIM", "DDIMScheduler", {"set_alpha_to_one": False}, kind=TIMESTEPS),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, kind=TIMESTEPS),
    # A1111's UniPC options: variant bh1, order 3, lower order final
    SamplerSpec("UniPC", "UniPCMultistepScheduler", {"solver_type": "bh1", "solver_order": 3,
                                                     "lower_order_final": True}, kind=TIMESTEPS),
    SamplerSpec("LCM", "LCMScheduler", {}, aliases=("k_lcm",), kind=LCM),
)
SAMPLER_NAMES = tuple(s.name for s in SAMPLERS)
_BY_NAME = {s.name.lower(): s for s in SAMPLERS} | {a: s for s in SAMPLERS for a in s.aliases}
# A1111 accepts a schedule's label or its name ("sgm_uniform"), and "SGMUniform"
_SCHEDULE_NAMES = ({t.lower(): t for t in SCHEDULE_TYPES} | {t.lower().replace(" ", "_"): t for t in SCHEDULE_TYPES}
                   | {"sgmuniform": "SGM Uniform"})


@dataclass(frozen=True)
class SamplerChoice:
    spec: SamplerSpec
    schedule: str  # as requested ("Automatic" stays "Automatic")
    resolved_schedule: str  # what actually runs

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def infotext_schedule(self) -> str:
        """What A1111 writes as "Schedule type": the schedule it computed, or "Automatic" where it used the
        model's own sigmas or timesteps (Automatic on Euler a, Euler, LMS, Heun, DDIM, PLMS, UniPC, LCM)."""
        if self.schedule == "Automatic" and (self.spec.kind != K_DIFFUSION or self.resolved_schedule == "Uniform"):
            return "Automatic"
        return self.resolved_schedule

    def run_schedule(self, model: DiscreteSigmas, steps: int, strength: float, fix_steps: bool = False) -> RunSchedule:
        """A1111's steps and noise levels for one img2img run of this sampler."""
        if self.spec.kind == TIMESTEPS:
            return schedules.timestep_img2img(self.name, steps, strength, model, fix_steps)
        if self.spec.kind == LCM:
            return schedules.lcm_img2img(steps, strength, model, fix_steps)
        return schedules.k_img2img(self.resolved_schedule, steps, strength, model, fix_steps,
                                   self.spec.discard_penultimate)

    def make_scheduler(self, base_config: Any, seed: int = 0, run: RunSchedule | None = None) -> Any:
        """A fresh scheduler of this kind, built from the model's own scheduler config, that runs `run`
        (default: A1111's full 20-step schedule, as for a strength-1 run).

        `seed` feeds samplers that draw their own noise (DPM++ SDE's Brownian tree), so they repeat too.
        """
        cls = getattr(diffusers, self.spec.scheduler_class)
        overrides = dict(self.spec.options)
        if "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
            overrides["noise_sampler_seed"] = seed
        if run is None:
            run = self.run_schedule(DiscreteSigmas.from_scheduler_config(base_config), 20, 1.0)
        vp_start = run.start_sigma if run.vp else None
        return explicit_scheduler(self.spec.scheduler_class, base_config, overrides, sigmas=run.sigmas,
                                  timesteps=run.timesteps, stride_steps=run.stride_steps, start_sigma=vp_start)


def split_legacy_name(name: str) -> tuple[str, str | None]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); names without a schedule suffix pass through."""
    for schedule in SCHEDULE_TYPES[1:]:
        suffix = " " + schedule
        if name.endswith(suffix) and name[: -len(suffix)].lower() in _BY_NAME:
            return name[: -len(suffix)], schedule
    return name, None


def resolve_sampler(name: str, schedule: str = "Automatic") -> SamplerChoice:
    """Look up a sampler by A1111 name, alias or legacy "<name> <schedule>" form; errors list valid names."""
    if not isinstance(name, str):
        raise RequestError("sampler_name", f"{name!r} is not a sampler name")
    base, legacy_schedule = split_legacy_name(name.strip())
    spec = _BY_NAME.get(base.lower())
    if spec is None:
        raise RequestError("sampler_name", f"unknown sampler {name!r}; valid: {', '.join(SAMPLER_NAMES)}")
    schedule = schedule or "Automatic"
    if legacy_schedule and schedule == "Automatic":
        schedule = legacy_schedule
    canonical = _SCHEDULE_NAMES.get(str(schedule).lower())
    if canonical is None:
        raise RequestError("scheduler", f"unknown schedule type {schedule!r}; valid: {', '.join(SCHEDULE_TYPES)}")
    if canonical not in spec.schedule_types:
        raise RequestError("scheduler", f"schedule type {canonical!r} is not available for sampler "
                                        f"{spec.name!r}; valid: {', '.join(spec.schedule_types)}")
    return SamplerChoice(spec, canonical, spec.default_schedule if canonical == "Automatic" else canonical)
