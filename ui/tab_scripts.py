"""The Outpaint, Loopback and SD upscale sub-tabs of the img2img tab.

Each is an ordinary img2img sub-tab (its own image input, the shared parameter panel, the one Generate path)
whose only difference is that choosing it sets the Script dropdown under the parameters to its script, so the
script's controls are shown there. Nothing is implemented twice: Generate reads the active sub-tab's image and
runs whatever the Script dropdown says (ui.scripts_panel). Going back to a plain sub-tab puts the dropdown
back to None when one of these tabs had set it.
"""

from __future__ import annotations

import gradio as gr

from pipelines.launch_flags import Settings
from scripts import loopback, outpainting_mk2, outpainting_poor_man, sd_upscale
from ui.modes import ModeTab, image_input


class ScriptTab:
    """Module-like (NAME, LABEL, TAB_ID, build(settings)), as ui.build's MODE_MODULES expect."""

    def __init__(self, name: str, label: str, script: str, note: str, keep: tuple[str, ...] = (),
                 send_label: str | None = None):
        self.NAME, self.LABEL, self.TAB_ID = name, label, f"img2img_{name}_tab"
        self.SEND_LABEL = send_label or f"Send to {name}"  # ui.build's "Send to" buttons
        self.SCRIPT = script  # the script this tab selects
        self.KEEP = keep  # scripts the tab leaves selected (Outpaint keeps mk2 when the user chose it)
        self.NOTE = note

    def build(self, settings: Settings) -> ModeTab:
        with gr.Tab(self.LABEL, id=self.TAB_ID, elem_id=self.TAB_ID) as tab:
            widget = image_input(f"Image for {self.LABEL}", f"img2img_{self.NAME}_image", settings)
            gr.Markdown(self.NOTE, elem_id=f"img2img_{self.NAME}_note")

        def read(value):
            return {"init_image": value}

        return ModeTab(self.NAME, self.LABEL, self.TAB_ID, tab, inputs=[widget], read=read,
                       image_input=widget)


OUTPAINT = ScriptTab(
    "outpaint", "Outpaint", outpainting_poor_man.TITLE,
    "Extends the picture and fills the new area. Settings are under **Script** below the parameters "
    f"(*{outpainting_poor_man.TITLE}*; pick *{outpainting_mk2.TITLE}* there for the other method).",
    keep=(outpainting_mk2.TITLE, outpainting_poor_man.TITLE))
LOOPBACK = ScriptTab(
    "loopback", "Loopback", loopback.TITLE,
    "Feeds each output back in as the next input. Settings are under **Script** below the parameters.")
SD_UPSCALE = ScriptTab(
    "sd_upscale", "SD upscale", sd_upscale.TITLE,
    "Upscales, then redraws the picture tile by tile: width and height are the tile size (set them to the "
    "original's size). Settings are under **Script** below the parameters.", send_label="Send to SD upscale")
TABS = (OUTPAINT, LOOPBACK, SD_UPSCALE)
# mode name -> (script title, scripts kept when already chosen): what ui.scripts_panel.wire_script_tabs takes
TAB_SCRIPTS: dict[str, tuple[str, tuple[str, ...]]] = {t.NAME: (t.SCRIPT, t.KEEP) for t in TABS}
