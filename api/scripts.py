"""script_name / script_args: the img2img scripts the API can run, over a `scripts` object passed in.

The object (scripts/registry.py, by the scripts helper) needs
    run(name, request, script_args, on_progress, control) -> GenerationResult
and, to list and check names up front, one of: names() / script_names() / titles(), or a SCRIPTS /
SCRIPT_NAMES collection (a dict's keys, or items with .title / .name). Names match case-insensitively
("sd upscale" = "SD upscale"), as A1111's do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from api.errors import field_error


class ScriptCatalog:
    def __init__(self, scripts: Any | None):
        self.scripts = scripts

    def names(self) -> list[str] | None:
        """The scripts' titles; [] when there is no scripts object; None when the object cannot list them."""
        if self.scripts is None:
            return []
        for attr in ("names", "script_names", "titles", "SCRIPTS", "SCRIPT_NAMES"):
            value = getattr(self.scripts, attr, None)
            if value is None:
                continue
            if callable(value):
                value = value()
            return _titles(value)
        return None

    def resolve(self, name: str) -> str:
        """The canonical title for `name`; 422 naming script_name and listing the known scripts."""
        names = self.names()
        if names is None:  # the object cannot list its scripts: let run() judge the name
            return name
        for title in names:
            if title.lower() == name.strip().lower():
                return title
        known = ", ".join(repr(n) for n in names) if names else "none (no scripts are installed)"
        raise field_error("script_name", f"script {name!r} not found; known: {known}")

    def check(self, name: str, request: Any, script_args: list) -> None:
        """Parse and check script_args before the job is queued, when the scripts object can (check());
        RequestError naming script_args otherwise. Objects without check() are judged by run()."""
        checker = getattr(self.scripts, "check", None)
        if checker is not None:
            checker(name, request, script_args)

    def run(self, name: str, request: Any, script_args: list, on_progress: Any, control: Any) -> Any:
        if self.scripts is None:
            raise field_error("script_name", f"script {name!r} not found; no scripts are installed")
        try:
            return self.scripts.run(name, request, script_args, on_progress, control)
        except KeyError as exc:  # an unknown name the object could not list up front
            if name.lower() in str(exc).lower():
                raise field_error("script_name", f"script {name!r} not found: {exc}") from None
            raise


def _titles(value: Iterable[Any]) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    titles = []
    for item in value:
        if isinstance(item, str):
            titles.append(item)
        else:
            title = getattr(item, "title", None) or item.name
            titles.append(str(title() if callable(title) else title))
    return titles


class RegistryScripts:
    """The project's scripts (scripts/registry.py) behind the run(name, request, script_args, on_progress,
    control) protocol above. app.py passes `RegistryScripts(engine, settings.models_dir, interrogator,
    upscaler_models)`, the last two owned by the ModelManager."""

    def __init__(self, engine: Any, models_dir: Any, interrogator: Any = None, upscaler_models: Any = None):
        self.engine = engine
        self.models_dir = models_dir
        self.interrogator = interrogator
        self.upscaler_models = upscaler_models

    def names(self) -> list[str]:
        from scripts import registry

        return registry.script_titles()

    def check(self, name: str, request: Any, script_args: list) -> None:
        from scripts import registry

        registry.check_script(name, request, script_args, models_dir=self.models_dir,
                              limits=getattr(self.engine, "limits", None))

    def run(self, name: str, request: Any, script_args: list, on_progress: Any, control: Any) -> Any:
        from scripts import registry

        interrogate = self.interrogator.interrogate if self.interrogator is not None else None
        return registry.run_script(
            name,
            self.engine,
            request,
            script_args,
            on_progress,
            control,
            models_dir=self.models_dir,
            interrogate=interrogate,
            upscaler_models=self.upscaler_models,
        )
