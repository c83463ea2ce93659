"""The Inpaint sub-tab: the uploaded image is the editor's background; the mask is painted over it with a
brush (size slider, eraser, undo are the editor's own tools).

What the editor hands over (gr.ImageEditor, type="pil", image_mode="RGBA") is {"background", "layers",
"composite"}: the upload as it was (alpha kept), one RGBA layer per drawing layer, transparent where nothing
was painted, and the flattened picture. So:
- mask = the painted pixels of the layers: alpha > 128, as A1111's create_binary_mask (the brush colour
  does not matter, and the antialiased fringe of a stroke counts once it is more than half covered);
- no strokes, but the upload has transparent pixels (erased in an external editor): those pixels are the
  mask, read from alpha only (the RGB under them is often black and must not matter);
- the init image is the background, never the composite (the brush strokes are not part of the picture).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from pipelines.images.mask_ops import ALPHA_THRESHOLD, mask_from_transparency
from pipelines.launch_flags import Settings
from ui.modes import ModeTab, tolerant

NAME, LABEL, TAB_ID = "inpaint", "Inpaint", "img2img_inpaint_tab"
SEND_LABEL = "Send to inpaint"
# Opaque, so the strokes' alpha (not their colour) is the mask; white as A1111's default mask brush, black for
# bright pictures.
MASK_BRUSH_COLORS = [("#ffffff", 0.7), ("#000000", 0.7)]


def mask_editor(label: str, elem_id: str, settings: Any = None) -> gr.ImageEditor:
    """An editor to paint a mask on the uploaded image: fixed brush colours, eraser, undo; no crop (the mask
    must stay aligned with the picture)."""
    return tolerant(gr.ImageEditor(
        label=label,
        elem_id=elem_id,
        sources=["upload", "clipboard"],
        type="pil",
        image_mode="RGBA",  # keeps the upload's transparency and the strokes' alpha
        brush=gr.Brush(colors=MASK_BRUSH_COLORS, default_color=MASK_BRUSH_COLORS[0], color_mode="fixed"),
        eraser=gr.Eraser(),
        layers=False,
        transforms=(),
        format="png",
        height=512,
    ), settings)


def mask_from_strokes(layers: list[Any], size: tuple[int, int]) -> Image.Image | None:
    """The union of the painted pixels (alpha > 128) of the editor's layers, as an "L" mask of `size`;
    None when there is no layer at all."""
    painted = None
    for layer in layers:
        if not isinstance(layer, Image.Image):
            continue
        if layer.size != size:  # a layer always spans the canvas; a mismatch would be a crop: follow the image
            layer = layer.resize(size, Image.NEAREST)
        alpha = np.asarray(layer.convert("RGBA").getchannel("A")) > ALPHA_THRESHOLD
        painted = alpha if painted is None else painted | alpha
    if painted is None:
        return None
    return Image.fromarray(painted.astype(np.uint8) * 255, "L")


def read_inpaint(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Editor value -> {"init_image", "mask"}. No upload: no init image (the request names the tab). An empty
    mask is passed on: the engine returns the picture unchanged with a notice (or, inverted, redraws everything)."""
    background = (value or {}).get("background")
    if background is None:
        return {"init_image": None}
    mask = mask_from_strokes(list(value.get("layers") or []), background.size)
    if mask is None or mask.getbbox() is None:  # nothing painted: the upload's own transparency, if any
        from_alpha = mask_from_transparency(background)
        mask = from_alpha if from_alpha is not None else Image.new("L", background.size, 0)
    return {"init_image": background, "mask": mask}


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        editor = mask_editor("Image for inpainting with mask", "img2maskimg", settings)
    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=[editor], read=read_inpaint, image_input=editor, masks=True)
