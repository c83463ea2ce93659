"""The Inpaint upload sub-tab: an image and a separate mask file (white = redraw, black = keep; a mask with
transparency uses its alpha, opaque = redraw, as in A1111). The engine reads the mask
(pipelines.images.mask_ops.mask_from_image) and stretches one of another size onto the image."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from pipelines.fields import RequestError
from pipelines.launch_flags import Settings
from ui.modes import ModeTab, image_input
from ui.values import check_image

NAME, LABEL, TAB_ID = "inpaint_upload", "Inpaint upload", "img2img_inpaint_upload_tab"
SEND_LABEL = "Send to inpaint upload"


def read_inpaint_upload(image: Image.Image | None, mask: Any) -> dict[str, Any]:
    """Image + mask widgets -> {"init_image", "mask"}; a missing or unreadable mask is a RequestError."""
    if image is None:
        return {"init_image": None}
    if mask is None:
        raise RequestError("mask", f"no mask in the {LABEL} tab: upload a black-and-white mask (white = redraw)")
    try:
        check_image(mask, LABEL)
    except RequestError as exc:
        raise RequestError("mask", exc.message.replace("uploaded file", "mask file")) from None
    return {"init_image": image, "mask": mask}


def build(settings: Settings) -> ModeTab:
    with gr.Tab(LABEL, id=TAB_ID, elem_id=TAB_ID) as tab:
        image = image_input("Image for img2img", "img_inpaint_base", settings)
        # RGBA: a mask with transparency keeps its alpha; an opaque one is read as greyscale.
        mask = image_input("Mask", "img_inpaint_mask", settings)
    return ModeTab(NAME, LABEL, TAB_ID, tab, inputs=[image, mask], read=read_inpaint_upload, image_input=image,
                   masks=True)
