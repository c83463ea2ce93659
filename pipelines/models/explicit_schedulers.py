"""diffusers schedulers that run a schedule given to them (A1111's), instead of computing their own.

diffusers' pipelines call `scheduler.set_timesteps(n)`; the subclasses made here ignore `n` and set up the
sigmas or timesteps they were built with. For the k-diffusion schedulers the given sigmas go in through the
hook diffusers' own Karras option uses (`_convert_to_karras`), so each scheduler still derives its
interleaved midpoints, timesteps and solver state itself. The pipeline then runs the whole schedule
(strength 1.0) from the start latents `add_start_noise` makes.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import diffusers
import numpy as np
import torch

# Schedulers whose timesteps are 1:1 with sigmas[:-1] and rounded by diffusers: A1111 feeds the UNet the exact
# fractional t = sigma_to_t(sigma), so they get those back.
_FRACTIONAL_TIMESTEPS = {"DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler"}
# Schedulers that keep one sigma per step (no interleaved midpoints): a non-zero final sigma can be set.
_PLAIN_SIGMAS = _FRACTIONAL_TIMESTEPS | {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                                         "LMSDiscreteScheduler"}
TIMESTEP_SCHEDULERS = {"DDIMScheduler", "PNDMScheduler", "LCMScheduler"}


class _ExplicitSchedule:
    """Mixin: `run_sigmas` (descending, ending in the final sigma) or `run_timesteps` replace diffusers' own."""

    run_sigmas: np.ndarray | None = None
    run_timesteps: np.ndarray | None = None
    stride_steps: int = 0
    start_sigma: float | None = None  # set: the start latents are noised to this level (VP) instead

    def set_timesteps(self, num_inference_steps=None, device=None, *args, **kwargs):
        if self.run_sigmas is None and self.run_timesteps is None:  # diffusers' __init__ calls it before they are set
            return super().set_timesteps(num_inference_steps, device, *args, **kwargs)
        name = _base_name(type(self))
        if name in TIMESTEP_SCHEDULERS:
            self._set_run_timesteps(name, device)
            return
        sigmas = np.asarray(self.run_sigmas, dtype=np.float64)
        n = len(sigmas) - 1
        if name == "EulerAncestralDiscreteScheduler":  # no Karras hook in it: set its two arrays directly
            super().set_timesteps(n, device=device)
            self.timesteps = torch.tensor(self._fractional_timesteps(sigmas), dtype=torch.float32, device=device)
        else:
            super().set_timesteps(n, device=device)
        if name in _FRACTIONAL_TIMESTEPS:
            if self.run_timesteps is not None:  # UniPC: A1111's own model times
                fractional = np.asarray(self.run_timesteps, dtype=np.float64)
            else:
                fractional = self._fractional_timesteps(sigmas)
            self.timesteps = torch.tensor(fractional, dtype=torch.float32, device=device)
        if name in _PLAIN_SIGMAS:
            self.sigmas = torch.tensor(sigmas, dtype=torch.float32)
        self.num_inference_steps = n

    def _fractional_timesteps(self, sigmas: np.ndarray) -> np.ndarray:
        """k-diffusion's sigma_to_t (log-sigma interpolation, not quantized) for every sigma but the last."""
        log_sigmas = np.log(((1 - self.alphas_cumprod.double()) / self.alphas_cumprod.double()).numpy() ** 0.5)
        return np.interp(-np.log(sigmas[:-1]), -log_sigmas[::-1], np.arange(len(log_sigmas))[::-1])

    def _convert_to_karras(self, in_sigmas, **kwargs):
        if self.run_sigmas is None:
            return super()._convert_to_karras(in_sigmas, **kwargs)
        return np.asarray(self.run_sigmas[:-1], dtype=np.float64)

    def _set_run_timesteps(self, name: str, device) -> None:
        # DDIM/PLMS step to t - 1000 // A1111's steps; LCM steps to the next timestep in the list. LCM indexes
        # alphas by integer timestep, so A1111's fractional LCM timesteps are rounded for it.
        super().set_timesteps(self.stride_steps or 1, device=device)
        timesteps = np.round(np.array(self.run_timesteps, dtype=np.float64)).astype(np.int64)
        self.timesteps = torch.from_numpy(timesteps).to(device)


@lru_cache(maxsize=None)
def _explicit_class(name: str) -> type:
    base = getattr(diffusers, name)
    return type(f"A1111{name}", (_ExplicitSchedule, base), {})


def _base_name(cls: type) -> str:
    return next(c.__name__ for c in cls.__mro__ if c.__module__.startswith("diffusers."))


def explicit_scheduler(name: str, config: Any, overrides: dict[str, Any], *, sigmas=None, timesteps=None,
                       stride_steps: int = 0, start_sigma: float | None = None) -> Any:
    """A diffusers scheduler `name` built from the model's config that runs exactly the given schedule."""
    overrides = dict(overrides)
    params = inspect.signature(getattr(diffusers, name).__init__).parameters
    for flag in ("use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"):
        if flag in params:
            overrides[flag] = False
    if "use_karras_sigmas" in params and sigmas is not None:
        overrides["use_karras_sigmas"] = True  # the hook the given sigmas come in through
    if "final_sigmas_type" in params:
        final = float(sigmas[-1]) if sigmas is not None else 0.0
        overrides["final_sigmas_type"] = "zero" if final == 0 else "sigma_min"
    scheduler = _explicit_class(name).from_config(config, **overrides)
    scheduler.run_sigmas = None if sigmas is None else np.array(sigmas, dtype=np.float64)
    scheduler.run_timesteps = None if timesteps is None else np.array(timesteps)
    scheduler.stride_steps = stride_steps
    scheduler.start_sigma = start_sigma
    return scheduler


def add_start_noise(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timestep) -> torch.Tensor:
    """The start latents: the scheduler's own add_noise at its first step, unless the schedule names another
    level (A1111's DDIM/PLMS/UniPC/LCM), given as a k-diffusion sigma and applied in the VP form they use."""
    sigma = getattr(scheduler, "start_sigma", None)
    if sigma is None:
        return scheduler.add_noise(latents, noise, timestep)
    return (latents + noise * sigma) / (1 + sigma ** 2) ** 0.5
