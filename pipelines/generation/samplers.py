"""A1111 sampler and schedule-type names -> diffusers schedulers (a name -> factory registry)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers

from pipelines.fields import RequestError

SCHEDULE_TYPES = ("Automatic", "Karras", "Exponential", "Uniform")
# Schedule type -> the diffusers scheduler argument that selects it ("Uniform" = the plain schedule).
_SCHEDULE_FLAGS = {"Karras": "use_karras_sigmas", "Exponential": "use_exponential_sigmas"}


@dataclass(frozen=True)
class SamplerSpec:
    name: str  # A1111's name
    scheduler_class: str  # diffusers class name
    options: dict[str, Any] = field(default_factory=dict)
    default_schedule: str = "Uniform"  # what "Automatic" means for this sampler (as A1111 1.9+)
    aliases: tuple[str, ...] = ()

    @property
    def schedule_types(self) -> tuple[str, ...]:
        """Schedule types this diffusers scheduler can honour."""
        params = inspect.signature(getattr(diffusers, self.scheduler_class).__init__).parameters
        return ("Automatic", "Uniform") + tuple(t for t, flag in _SCHEDULE_FLAGS.items() if flag in params)


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                "Karras", ("k_dpmpp_2m",)),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, "Uniform", ("k_dpmpp_sde",)),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, "Exponential", ("k_dpmpp_2m_sde",)),
    SamplerSpec("DPM++ 3M SDE", "DPMSolverMultistepScheduler",
                {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, "Exponential", ("k_dpmpp_3m_sde",)),
    SamplerSpec("DPM++ 2S a", "DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                "Karras", ("k_dpmpp_2s_a",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, "Uniform", ("k_euler_a", "k_euler_ancestral")),
    SamplerSpec("Euler", "EulerDiscreteScheduler", {}, "Uniform", ("k_euler",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", {}, "Uniform", ("k_lms",)),
    SamplerSpec("Heun", "HeunDiscreteScheduler", {}, "Uniform", ("k_heun",)),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {}, "Karras", ("k_dpm_2",)),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, "Karras", ("k_dpm_2_a",)),
    SamplerSpec("DDIM", "DDIMScheduler", {"set_alpha_to_one": False}),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", {}),
    SamplerSpec("LCM", "LCMScheduler", {}),
)
SAMPLER_NAMES = tuple(s.name for s in SAMPLERS)
_BY_NAME = {s.name.lower(): s for s in SAMPLERS} | {a: s for s in SAMPLERS for a in s.aliases}


@dataclass(frozen=True)
class SamplerChoice:
    spec: SamplerSpec
    schedule: str  # as requested ("Automatic" stays "Automatic" for the infotext)
    resolved_schedule: str  # what actually runs

    @property
    def name(self) -> str:
        return self.spec.name

    def make_scheduler(self, base_config: Any, seed: int = 0) -> Any:
        """A fresh scheduler of this kind, built from the model's own scheduler config.

        `seed` feeds samplers that draw their own noise (DPM++ SDE's Brownian tree), so they repeat too.
        """
        cls = getattr(diffusers, self.spec.scheduler_class)
        overrides = dict(self.spec.options)
        if "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
            overrides["noise_sampler_seed"] = seed
        flag = _SCHEDULE_FLAGS.get(self.resolved_schedule)
        if flag:
            overrides[flag] = True
        return cls.from_config(base_config, **overrides)


def split_legacy_name(name: str) -> tuple[str, str | None]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); names without a schedule suffix pass through."""
    for schedule in ("Karras", "Exponential"):
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
    canonical = {t.lower(): t for t in SCHEDULE_TYPES}.get(str(schedule).lower())
    if canonical is None:
        raise RequestError("scheduler", f"unknown schedule type {schedule!r}; valid: {', '.join(SCHEDULE_TYPES)}")
    resolved = spec.default_schedule if canonical == "Automatic" else canonical
    if resolved not in spec.schedule_types:
        resolved_ok = [t for t in spec.schedule_types if t != "Automatic"]
        if canonical == "Automatic":  # the sampler's A1111 default is not available in diffusers
            resolved = "Uniform"
        else:
            raise RequestError("scheduler", f"schedule type {canonical!r} is not available for sampler "
                                            f"{spec.name!r}; valid: {', '.join(['Automatic'] + resolved_ok)}")
    return SamplerChoice(spec, canonical, resolved)
