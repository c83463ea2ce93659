import diffusers
import pytest

from pipelines.fields import RequestError
from pipelines.generation.samplers import SAMPLER_NAMES, resolve_sampler

BASE = diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                               steps_offset=1, skip_prk_steps=True).config

REQUIRED = ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
            "DPM++ 2M SDE", "DDIM", "PLMS", "UniPC", "LCM"]


@pytest.mark.parametrize("name", REQUIRED)
def test_every_a1111_sampler_builds_a_scheduler(name):
    assert name in SAMPLER_NAMES
    scheduler = resolve_sampler(name).make_scheduler(BASE)
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10


def test_expected_diffusers_classes_and_options():
    # subclasses that run A1111's schedule (pipelines/models/explicit_schedulers.py)
    assert isinstance(resolve_sampler("Euler a").make_scheduler(BASE), diffusers.EulerAncestralDiscreteScheduler)
    s = resolve_sampler("DPM++ 2M SDE").make_scheduler(BASE)
    assert isinstance(s, diffusers.DPMSolverMultistepScheduler) and s.config.algorithm_type == "sde-dpmsolver++"
    assert isinstance(resolve_sampler("PLMS").make_scheduler(BASE), diffusers.PNDMScheduler)


def test_schedule_types_and_legacy_names():
    legacy = resolve_sampler("DPM++ 2M Karras")
    assert (legacy.name, legacy.schedule, legacy.resolved_schedule) == ("DPM++ 2M", "Karras", "Karras")
    assert resolve_sampler("Euler", "Exponential").resolved_schedule == "Exponential"
    auto = resolve_sampler("DPM++ 2M", "Automatic")
    assert auto.schedule == "Automatic" and auto.resolved_schedule == "Karras"  # A1111's default for it
    assert resolve_sampler("k_euler_a").name == "Euler a"
    assert resolve_sampler("euler A").name == "Euler a"


def test_unknown_sampler_names_the_field_and_lists_valid():
    with pytest.raises(RequestError) as exc:
        resolve_sampler("Euler b")
    assert exc.value.field == "sampler_name" and "'Euler b'" in str(exc.value) and "DPM++ 2M" in str(exc.value)


def test_unknown_or_unsupported_schedule_is_an_error():
    with pytest.raises(RequestError) as exc:
        resolve_sampler("Euler", "Wobbly")
    assert exc.value.field == "scheduler"
    with pytest.raises(RequestError) as exc:  # A1111's DDIM runs its own timesteps
        resolve_sampler("DDIM", "Karras")
    assert "not available for sampler 'DDIM'" in str(exc.value)
    with pytest.raises(RequestError):  # KL Optimal ends above sigma 0: not with interleaved midpoints
        resolve_sampler("Heun", "KL Optimal")
