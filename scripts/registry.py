"""Scripts by name, as the A1111 API's script_name gives them (case-insensitive), and one entry point that
parses script_args and runs the script."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.fields import RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.requests import Img2ImgRequest
from pipelines.limits import Limits
from scripts import loopback, outpainting_mk2, outpainting_poor_man, sd_upscale
from scripts.common import Interrogator, ScriptContext

# Lower-case name -> module, in the order A1111's dropdown lists them.
SCRIPTS: dict[str, ModuleType] = {
    module.TITLE.lower(): module for module in (loopback, outpainting_mk2, outpainting_poor_man, sd_upscale)}


def script_titles() -> list[str]:
    """Display names for the Script dropdown (after "None")."""
    return [module.TITLE for module in SCRIPTS.values()]


def find_script(name: str) -> ModuleType:
    if isinstance(name, str) and name.strip().lower() in SCRIPTS:
        return SCRIPTS[name.strip().lower()]
    raise RequestError("script_name", f"unknown script {name!r}; known: {', '.join(script_titles())}")


def parse_script_args(name: str, script_args: list[Any] | None, *,
                      models_dir: Path | str | None = None) -> Any:
    """The script's typed params from A1111's positional script_args (RequestError("script_args") if bad)."""
    return find_script(name).parse_script_args(script_args, ScriptContext(models_dir=models_dir))


def check_script(name: str, request: Img2ImgRequest, script_args: list[Any] | None, *,
                 models_dir: Path | str | None = None, limits: Limits | None = None) -> Any:
    """Parse script_args and check the script's own bounds (its output size) before the job is queued;
    RequestError("script_args") if bad. Returns the typed params."""
    module = find_script(name)
    params = module.parse_script_args(script_args, ScriptContext(models_dir=models_dir))
    check = getattr(module, "check", None)
    if check is not None:
        check(request, params, limits or Limits(), models_dir)
    return params


def run_script(name: str, engine: Any, request: Img2ImgRequest, script_args: list[Any] | None,
               on_progress: ProgressCallback | None = None, control: JobControl | None = None, *,
               models_dir: Path | str | None, interrogate: Interrogator | None = None,
               upscaler_models: Any = None) -> GenerationResult:
    """Run an img2img script the way the A1111 API names it ("loopback", "sd upscale", ...)."""
    module = find_script(name)
    context = ScriptContext(models_dir=Path(models_dir) if models_dir is not None else None,
                            interrogate=interrogate, upscaler_models=upscaler_models)
    params = module.parse_script_args(script_args, context)
    return _run_as_one_job(module, engine, request, params, on_progress, control, context)


def _run_as_one_job(module, engine, request, params, on_progress, control, context) -> GenerationResult:
    """A script is one job: it holds the model across its img2img calls and Interrupt reaches it throughout."""
    control = control or JobControl()
    job = getattr(engine, "job", None)  # the tests' recording engines have no lock
    if job is None:
        return module.run(engine, request, params, on_progress, control, context)
    with job(control):
        return module.run(engine, request, params, on_progress, control, context)


def run_with_params(engine: Any, request: Img2ImgRequest, params: Any,
                    on_progress: ProgressCallback | None = None, control: JobControl | None = None, *,
                    models_dir: Path | str | None = None,
                    interrogate: Interrogator | None = None, upscaler_models: Any = None) -> GenerationResult:
    """Run the script whose params dataclass the UI built (LoopbackParams, SdUpscaleParams, ...)."""
    for module in SCRIPTS.values():
        params_type = getattr(module, "PARAMS", None)
        if params_type is not None and isinstance(params, params_type):
            context = ScriptContext(models_dir=Path(models_dir) if models_dir is not None else None,
                                    interrogate=interrogate, upscaler_models=upscaler_models)
            return _run_as_one_job(module, engine, request, params, on_progress, control, context)
    raise TypeError(f"{type(params).__name__} is not the params of a known script")
