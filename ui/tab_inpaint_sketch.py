"""The Inpaint sketch sub-tab: paint colours on the image (the Sketch tab's colour brush); the pixels the
sketch changed become the mask and the painted picture is the init image, so the colours guide what is drawn
there. "Mask transparency" (A1111, 0-100) lets that much of the original show through the sketch colours
inside the mask; the mask itself stays whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr
from PIL import Image

from pipelines.fields import RequestError
from pipelines.images.image_ops import flatten_onto_white
from pipelines.images.mask_ops import mask_from_sketch_difference
from pipelines.launch_flags import Settings
from ui.modes import ModeTab, sketch_editor

NAME, LABEL, TAB_ID = "inpaint_sketch", "Inpaint sketch", "img2img_inpaint_sketch_tab"
SEND_LABEL = "Send to inpaint sketch"


def blend_sketch(original: Image.Image, sketched: Image.Image, mask: Image.Image,
                 transparency: float) -> Image.Image:
    """The init image: the sketch inside the mask, mixed with the original by `transparency` percent
    (0: the sketch colours as painted, 100: the original); outside the mask the original."""
    if not 0 <= transparency <= 100:
        raise RequestError("mask_alpha", f"{transparency} is outside 0..100")
    strength = 1 - transparency / 100
    weights = mask.point(lambda v: round(v * strength))
    return Image.composite(sketched, original, weights)


def read_inpaint_sketch(value: Mapping[str, Any] | None, transparency: float = 0) -> dict[str, Any]:
    """Editor value + Mask transparency -> {"init_image", "mask"}. Transparency in the upload is flattened
    onto white on both sides first, so only real paint counts as a change."""
    background = (value or {}).get("background")
    if background is None:
        return {"init_image": None}
    composite = value.get("composite")
    original = flatten_onto_white(background)
    sketched = flatten_onto_white(composite) if composite is not None else original
    if sketched.size != original.size:
        raise RequestError("mask", f"the sketch is {sketched.size[0]}x{sketched.size[1]} but the image is "
                                   f"{original.size[0]}x{original.size[1]}: upload the image again")
    mask = mask_from_sketch_difference(original, sketched)
    return {"init_image": blend_sketch(original, sketched, mask, float(transparency or 0)), "mask": mask}


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        editor = sketch_editor("Image for inpainting with mask", "inpaint_sketch", settings)
        transparency = gr.Slider(0, 100, value=0, step=1, label="Mask transparency", elem_id="img2img_mask_alpha")
    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=[editor, transparency], read=read_inpaint_sketch,
                   image_input=editor, masks=True)
