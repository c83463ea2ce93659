"""The right-hand column: live preview and progress, the gallery of results, the selected image's
infotext, and the "Send to" buttons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image


@dataclass
class Results:
    """The last run's outputs, kept per browser session in a gr.State."""

    images: list[Image.Image] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def gallery_value(self) -> list[Any]:
        # Saved files when there are any (their download keeps the PNG "parameters" chunk), else the images.
        if len(self.paths) == len(self.images):
            return [str(p) for p in self.paths]
        return list(self.images)

    def index(self, selected: int | None) -> int | None:
        """The selected image's index, or the first image's when none is selected; None when empty."""
        if not self.images:
            return None
        return selected if selected is not None and 0 <= selected < len(self.images) else 0


@dataclass
class OutputPanel:
    preview: gr.Image
    progress: gr.Markdown
    gallery: gr.Gallery
    results: gr.State
    selected: gr.State  # index of the selected gallery image (None: the first)
    infotext: gr.Textbox
    send_buttons: dict[str, gr.Button] = field(default_factory=dict)  # mode name -> button
    other_buttons: dict[str, gr.Button] = field(default_factory=dict)  # another tab's id -> its "Send to"


def build_output_panel(send_targets: list[tuple[str, str]],
                       other_targets: list[tuple[str, str]] = (), prefix: str = "img2img") -> OutputPanel:
    """send_targets: (mode name, button label) for each "Send to" button; other_targets: (tab id, label) for
    the buttons that send to other top-level tabs (Extras), wired by those tabs."""
    results = gr.State(Results())
    selected = gr.State(None)
    progress = gr.Markdown("", elem_id=f"{prefix}_progress")
    # The live preview lies over the gallery (page CSS) instead of pushing it down while a run goes.
    with gr.Column(elem_id=f"{prefix}_output_stack"):
        preview = gr.Image(label="Preview", elem_id=f"{prefix}_preview", interactive=False, visible=False,
                           height=512, format="jpeg")
        gallery = gr.Gallery(label="Output", elem_id=f"{prefix}_gallery", columns=4, height=512,
                             object_fit="contain", format="png", interactive=False, preview=True)
    with gr.Row(elem_id=f"image_buttons_{prefix}"):
        buttons = {name: gr.Button(label, elem_id=f"{prefix}_send_to_{name}", size="sm")
                   for name, label in send_targets}
        others = {name: gr.Button(label, elem_id=f"{prefix}_send_to_{name}", size="sm")
                  for name, label in other_targets}
    infotext = gr.Textbox(label="Generation parameters", elem_id=f"html_info_{prefix}", interactive=False,
                          lines=4, max_lines=20, buttons=["copy"])

    def on_select(res: Results, evt: gr.SelectData):
        index = res.index(evt.index)
        return index, (res.infotexts[index] if index is not None else "")

    gallery.select(on_select, inputs=results, outputs=[selected, infotext], queue=False)
    return OutputPanel(preview, progress, gallery, results, selected, infotext, buttons, others)
