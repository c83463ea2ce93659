"""POST /sdapi/v1/extra-single-image and /sdapi/v1/extra-batch-images: A1111's Extras upscale over HTTP.

Request and response shapes are A1111's (modules/api/models.py ExtrasBaseRequest and its two children):
`image` / imageList[].data as raw base64 or a data: URL, `upscaling_resize` a number (a numeric string is
coerced, as pydantic does for A1111), the response's `image` / `images` raw base64 PNG carrying the source's
"parameters" and the new "postprocessing" text, `html_info` the last image's text as HTML. As A1111's API,
nothing is saved (run_extras(save_output=False)). Bad input is a 422 naming the field.

No `from __future__ import annotations`: FastAPI reads the endpoint annotations through the error wrapper.
"""

import base64
import functools
import io
from collections.abc import Callable
from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import Request
from PIL import Image, PngImagePlugin
from pydantic import BaseModel, ConfigDict, Field

from api.codec import decode_image
from api.limits import cancel_when_disconnected
from pipelines.fields import RequestError
from pipelines.generation.extras import ExtrasRequest, ExtrasResizeMode, ExtrasResult, ExtrasSource, run_extras
from pipelines.generation.progress import JobControl
from pipelines.limits import ImageBudget


class ExtrasBaseRequest(BaseModel):
    """A1111's ExtrasBaseRequest (field names, defaults and bounds)."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: Literal[0, 1] = Field(default=0, description="0: upscale by upscaling_resize; 1: to "
                                                              "upscaling_resize_w x upscaling_resize_h")
    show_extras_results: bool = Field(default=True, description="accepted; the API always returns the images")
    gfpgan_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False,
                                     description="face restoration is not available: must be 0")
    codeformer_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False,
                                         description="face restoration is not available: must be 0")
    codeformer_weight: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscaling_resize: float = Field(default=2, gt=0, allow_inf_nan=False, description="factor, resize_mode 0")
    upscaling_resize_w: int = Field(default=512, ge=1, description="target width, resize_mode 1")
    upscaling_resize_h: int = Field(default=512, ge=1, description="target height, resize_mode 1")
    upscaling_crop: bool = Field(default=True, description="crop to fit the target size (resize_mode 1)")
    upscaler_1: str = Field(default="None", description="a name from GET /sdapi/v1/upscalers")
    upscaler_2: str = Field(default="None", description="a name from GET /sdapi/v1/upscalers")
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscale_first: bool = Field(default=False, description="accepted (no face restoration to order it with)")


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field(default="", description="base64 image or data: URL")


class FileData(BaseModel):
    data: str = Field(description="base64 image or data: URL")
    name: str = Field(description="file name")


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(description="the images to work on")  # noqa: N815 - A1111's name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


def extras_request(body: ExtrasBaseRequest) -> ExtrasRequest:
    """The engine request; face restoration asked for is refused (this project has none), never ignored."""
    for name in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(body, name) > 0:
            raise RequestError(name, "face restoration (GFPGAN/CodeFormer) is not available here; send 0")
    return ExtrasRequest(
        resize_mode=ExtrasResizeMode(body.resize_mode), upscaling_resize=float(body.upscaling_resize),
        upscaling_resize_w=body.upscaling_resize_w, upscaling_resize_h=body.upscaling_resize_h,
        upscaling_crop=body.upscaling_crop, upscaler_1=body.upscaler_1, upscaler_2=body.upscaler_2,
        upscaler_2_visibility=float(body.extras_upscaler_2_visibility))


def encode_png_with_text(image: Image.Image) -> str:
    """Raw base64 PNG with the image's string info as text chunks (A1111 encode_pil_to_base64)."""
    pnginfo = PngImagePlugin.PngInfo()
    for key, value in (image.info or {}).items():
        if isinstance(key, str) and isinstance(value, str):
            pnginfo.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def add_routes(route: Callable[..., None], api: Any) -> None:
    """Mount both routes through create_api's `route(path, endpoint, method, response_model)`; `api`: SdApi."""

    async def run(request: Request, sources: list[ExtrasSource], req: ExtrasRequest) -> ExtrasResult:
        control = JobControl()  # interrupted if the client leaves
        work = functools.partial(anyio.to_thread.run_sync, functools.partial(
            run_extras, api.engine, req, sources, save=False, control=control), limiter=api.waiters)
        return await cancel_when_disconnected(request, work, control, api.queue)

    async def single(body: ExtrasSingleImageRequest, request: Request) -> Any:
        req = extras_request(body)
        image = await anyio.to_thread.run_sync(decode_image, body.image, "image", ImageBudget(api.limits))
        result = await run(request, [ExtrasSource(image=image, label="image")], req)
        encoded = await anyio.to_thread.run_sync(lambda: [encode_png_with_text(i) for i in result.images])
        return {"html_info": result.html_info, "image": encoded[0] if encoded else None}

    async def batch(body: ExtrasBatchImagesRequest, request: Request) -> Any:
        req = extras_request(body)

        def decode_all() -> list[ExtrasSource]:
            budget = ImageBudget(api.limits)  # every image of the request together
            return [ExtrasSource(image=decode_image(item.data, f"imageList[{i}].data", budget), name=item.name,
                                 label=f"imageList[{i}]") for i, item in enumerate(body.imageList)]

        sources = await anyio.to_thread.run_sync(decode_all)
        result = await run(request, sources, req)
        encoded = await anyio.to_thread.run_sync(lambda: [encode_png_with_text(i) for i in result.images])
        return {"html_info": result.html_info, "images": encoded}

    route("/extra-single-image", single, "POST", ExtrasSingleImageResponse)
    route("/extra-batch-images", batch, "POST", ExtrasBatchImagesResponse)
