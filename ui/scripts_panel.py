"""The Script dropdown under the parameters, as in A1111: None, Loopback, Outpainting mk2, Poor man's
outpainting, SD upscale. Choosing one shows its controls (built from scripts.script_values.SCRIPT_SPECS, i.e. from
the script's params dataclass and its defaults). At Generate the panel turns its values into that dataclass
and the run goes through scripts.registry.run_with_params instead of engine.img2img, on the same
worker-thread / progress / Interrupt / Skip path.

Also wired here: the Outpaint / Loopback / SD upscale sub-tabs pick their script (ui.tab_scripts), and the
"Send to" buttons restore the script an infotext names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.fields import RequestError
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext
from scripts import loopback, registry, sd_upscale
from scripts.script_values import (
    ALL_CONTROLS,
    NO_SCRIPT,
    SCRIPT_CHOICES,
    SCRIPT_SPECS,
    Control,
    ScriptSpec,
    params_from_values,
    script_for_tab,
    script_from_infotext,
    split_values,
)
from scripts.sd_upscale import upscaler_choices
from ui.modes import ModeTab
from ui.params import tool_button
from ui.user_errors import refuse
from ui.values import describe_error

log = logging.getLogger(__name__)

Job = Callable[[Any, Any], Any]  # (on_progress, control) -> GenerationResult


def interrogator_status(interrogator: Any) -> tuple[bool, str]:
    """Interrogator.available(), or why there is none."""
    if interrogator is None:
        return False, "Interrogate CLIP is not set up in this app"
    try:
        return interrogator.available()
    except Exception as exc:  # noqa: BLE001 - a broken models folder must not break the page
        return False, f"Interrogate CLIP: {type(exc).__name__}: {exc}"


@dataclass
class ScriptsPanel:
    dropdown: gr.Dropdown
    groups: dict[str, gr.Column]  # script title -> its controls' column (visible when chosen)
    controls: dict[tuple[str, str], Any]  # (script title, params field) -> component
    refresh_upscalers: gr.Button
    pinned: gr.State  # True while a script sub-tab (Outpaint, ...) chose the dropdown's value
    models_dir: Path | None = None
    interrogator: Any = None
    hints: dict[str, gr.Markdown] = field(default_factory=dict)

    @property
    def inputs(self) -> list[Any]:
        """What the generate handler reads: the dropdown, then every control in ALL_CONTROLS order."""
        return [self.dropdown, *(self.controls[(title, c.name)] for title, c in ALL_CONTROLS)]

    @property
    def control_list(self) -> list[Any]:
        return [self.controls[(title, c.name)] for title, c in ALL_CONTROLS]

    def job(self, engine: Any, request: Img2ImgRequest, values: tuple | list) -> Job:
        """What Generate runs: engine.img2img, or the chosen script over the same request. gr.Error when a
        script control holds a bad value (before anything runs)."""
        try:
            title, script_values = split_values(values)
            params = params_from_values(title, script_values)
        except RequestError as exc:
            raise refuse(describe_error(exc)) from None
        if params is None:
            return lambda on_progress, control: engine.img2img(request, on_progress, control)
        interrogate = None
        if getattr(params, "append_interrogation", None) is loopback.AppendInterrogation.CLIP:
            ok, reason = interrogator_status(self.interrogator)
            if not ok:
                raise refuse(f"Loopback: append interrogated prompt 'CLIP' is unavailable. {reason}")
            interrogate = self.interrogator.interrogate
        log.info("UI: running script %s with %s", title, params)
        return lambda on_progress, control: registry.run_with_params(
            engine, request, params, on_progress, control, models_dir=self.models_dir,
            interrogate=interrogate)


# 1. Layout --------------------------------------------------------------------------------------------------
def build_scripts_panel(models_dir: Path | None, interrogator: Any = None) -> ScriptsPanel:
    dropdown = gr.Dropdown(list(SCRIPT_CHOICES), value=NO_SCRIPT, label="Script", elem_id="script_list")
    pinned = gr.State(False)
    groups, controls, hints = {}, {}, {}
    refresh = None
    for spec in SCRIPT_SPECS.values():
        with gr.Column(visible=False, elem_id=f"script_{spec.key}") as group:
            if spec.hint:
                hints[spec.title] = gr.Markdown(spec.hint, elem_id=f"script_{spec.key}_hint")
            for control in spec.controls:
                if control.kind == "upscaler":
                    with gr.Group(), gr.Row(equal_height=True):  # the refresh button inside the radio's box
                        controls[(spec.title, control.name)] = _widget(spec, control, models_dir,
                                                                       interrogator)
                        refresh = tool_button("🔄", f"script_{spec.key}_refresh",
                                              "Refresh the upscaler list")
                else:
                    controls[(spec.title, control.name)] = _widget(spec, control, models_dir, interrogator)
        groups[spec.title] = group
    panel = ScriptsPanel(dropdown, groups, controls, refresh, pinned, models_dir, interrogator, hints)
    _wire_panel(panel)
    return panel


def _widget(spec: ScriptSpec, control: Control, models_dir: Path | None, interrogator: Any) -> Any:
    elem_id, value = f"script_{spec.key}_{control.name}", spec.default(control.name)
    if control.kind == "slider":
        return gr.Slider(control.minimum, control.maximum, value=value, step=control.step,
                         label=control.label, elem_id=elem_id)
    if control.kind == "checkbox":
        return gr.Checkbox(value=value, label=control.label, elem_id=elem_id)
    if control.kind == "directions":
        return gr.CheckboxGroup(list(control.choices), value=value, label=control.label, elem_id=elem_id)
    if control.kind == "upscaler":
        return gr.Radio(upscaler_choices(models_dir), value=value, label=control.label, elem_id=elem_id)
    if (spec.title, control.name) == (loopback.TITLE, "append_interrogation"):
        return gr.Radio(list(control.choices), value=value, label=control.label, elem_id=elem_id,
                        **_interrogation_state(interrogator))
    return gr.Radio(list(control.choices), value=value, label=control.label, elem_id=elem_id)


def _interrogation_state(interrogator: Any) -> dict[str, Any]:
    """"CLIP" can be chosen only when the interrogator's models are there; otherwise the radio is disabled
    and says why (what to put in models/BLIP and models/CLIP)."""
    ok, reason = interrogator_status(interrogator)
    if ok:
        return {"interactive": True, "info": None}
    return {"interactive": False, "info": f"CLIP is unavailable: {reason}"}


def _wire_panel(panel: ScriptsPanel) -> None:
    titles = list(panel.groups)
    append = panel.controls[(loopback.TITLE, "append_interrogation")]
    upscaler = panel.controls[(sd_upscale.TITLE, "upscaler")]

    def show(title: str):
        groups = [gr.Column(visible=(t == title)) for t in titles]
        if title != loopback.TITLE:
            return *groups, gr.skip()
        state = _interrogation_state(panel.interrogator)  # models may have been added since start-up
        return *groups, (gr.Radio(**state) if state["interactive"] else gr.Radio(value="None", **state))

    def refresh(current: str):
        choices = upscaler_choices(panel.models_dir)
        return gr.Radio(choices=choices, value=current if current in choices else choices[0])

    panel.dropdown.change(show, inputs=panel.dropdown, outputs=[*panel.groups.values(), append], queue=False)
    panel.dropdown.input(lambda: False, outputs=panel.pinned, queue=False)  # the user's own choice
    panel.refresh_upscalers.click(refresh, inputs=upscaler, outputs=upscaler, queue=False)


# 2. Sub-tabs that stand for a script ------------------------------------------------------------------------
def wire_script_tabs(panel: ScriptsPanel, modes: list[ModeTab], tab_scripts: dict[str, tuple[str, tuple]]
                     ) -> None:
    """tab_scripts: mode name -> (script title, titles that tab keeps when already chosen)."""
    for mode in modes:
        tab_script, keep = tab_scripts.get(mode.name, (None, ()))

        def choose(current: str, pinned: bool, tab_script=tab_script, keep=keep):
            title, pinned = script_for_tab(tab_script, current, pinned, keep)
            return (gr.skip() if title is None else title), pinned

        mode.tab.select(choose, inputs=[panel.dropdown, panel.pinned], outputs=[panel.dropdown, panel.pinned],
                        queue=False)


# 3. "Send to" restores the script an infotext names ---------------------------------------------------------
def paste_script(panel: ScriptsPanel, infotext: str | None, target: str, current: str, pinned: bool,
                 tab_scripts: dict[str, tuple[str, tuple]]) -> list[Any]:
    """Values for [dropdown, pinned, *controls]: the controls the infotext names, and the script: the target
    tab's own (Outpaint, ...), else the one the infotext names, else as a plain tab leaves it."""
    updates = script_from_infotext(parse_infotext(infotext), upscaler_choices(panel.models_dir)) \
        if infotext and infotext.strip() else None
    for message in updates.warnings if updates else ():
        gr.Warning(f"Not pasted: {message}")
    tab_script, keep = tab_scripts.get(target, (None, ()))
    if tab_script is None and updates is not None and updates.title is not None:
        title, pinned = updates.title, False
    else:
        title, pinned = script_for_tab(tab_script, current, pinned, keep)
    values = updates.values if updates else {}
    controls = [values[(t, c.name)] if (t, c.name) in values else gr.skip() for t, c in ALL_CONTROLS]
    return [gr.skip() if title is None else title, pinned, *controls]


def wire_script_paste(panel: ScriptsPanel, output: Any, png_info: Any,
                      tab_scripts: dict[str, tuple[str, tuple]]) -> None:
    """A second listener on every "Send to" button (ui.build's sets the image and the common fields)."""
    outputs = [panel.dropdown, panel.pinned, *panel.control_list]
    for name, button in output.send_buttons.items():
        def from_gallery(results: Any, selected: int | None, current: str, pinned: bool, name=name):
            index = results.index(selected)
            if index is None:
                return [gr.skip()] * len(outputs)
            return paste_script(panel, results.infotexts[index], name, current, pinned, tab_scripts)

        button.click(from_gallery, inputs=[output.results, output.selected, panel.dropdown, panel.pinned],
                     outputs=outputs, queue=False)
    for name, button in png_info.send_buttons.items():
        def from_png_info(image: Any, current: str, pinned: bool, name=name):
            if image is None:
                return [gr.skip()] * len(outputs)
            return paste_script(panel, read_infotext(image), name, current, pinned, tab_scripts)

        button.click(from_png_info, inputs=[png_info.image, panel.dropdown, panel.pinned], outputs=outputs,
                     queue=False)
