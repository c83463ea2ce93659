"""Poor man's outpainting (A1111 scripts/poor_mans_outpainting.py): grow the canvas, inpaint the new bands.

Steps: margins per chosen direction, the canvas grown to a multiple of 64
(pipelines.images.tiles.outpaint_margins)
-> the original pasted on a black canvas, the new bands white in the mask, which reaches 2 x mask blur into
the original so the seam is repainted (expand_canvas) -> tiles of the request's width x height overlapping
by `pixels` (split_tiles); only tiles touching new area are inpainted (mask blur 2 x blur, whole picture,
the chosen masked content), one per engine call, tile i seeded seed + i -> merge_tiles.

Difference from A1111: A1111 also gives the sampler a second, narrower "latent mask" (inset by blur / 2
instead of 2 x blur); the engine's request has one mask, used for both. An axis with no direction chosen
is not grown (A1111 rounds it to 64 anyway and leaves an unmasked black strip). The doubled mask blur is
capped at the request's limit, 64 (A1111's slider allows a blur of 64, doubled to 128).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.fields import MIN_SIDE, InpaintArea, MaskedContent, RequestError, ResizeMode
from pipelines.generation.engine import GenerationResult
from pipelines.generation.noise import resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images import image_ops
from pipelines.images.tiles import expand_canvas, merge_tiles, outpaint_margins, split_tiles
from pipelines.options import color_rgb
from scripts.common import (
    DIRECTIONS,
    JobProgress,
    Output,
    ScriptContext,
    append_output,
    choice_arg,
    directions_arg,
    int_arg,
    new_result,
    outpainting_params,
    positional,
    save_output,
)

TITLE = "Poor man's outpainting"
MAX_MASK_BLUR = 64  # Img2ImgRequest's mask_blur range
MASKED_CONTENT_LABELS = [m.label for m in MaskedContent]  # fill, original, latent noise, latent nothing


@dataclass(frozen=True)
class PoorManOutpaintingParams:
    pixels: int = 128  # 8..256 step 8
    mask_blur: int = 4  # 0..64
    masked_content: MaskedContent = MaskedContent.FILL
    directions: tuple[str, ...] = DIRECTIONS

    def __post_init__(self) -> None:
        int_arg(TITLE, "pixels to expand", self.pixels, 128, 8, 256)
        int_arg(TITLE, "mask blur", self.mask_blur, 4, 0, 64)
        object.__setattr__(self, "masked_content", _masked_content(self.masked_content))
        object.__setattr__(self, "directions", directions_arg(TITLE, self.directions))


def _masked_content(value: Any) -> MaskedContent:
    if isinstance(value, MaskedContent):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # the UI's radio is type="index"
        if 0 <= value < len(MaskedContent):
            return MaskedContent(value)
        raise RequestError("script_args",
                           f"{TITLE}: masked content {value} is outside 0..{len(MaskedContent) - 1}")
    label = choice_arg(TITLE, "masked content", value, "fill", MASKED_CONTENT_LABELS)
    return MaskedContent(MASKED_CONTENT_LABELS.index(label))


def parse_script_args(args: list[Any] | None,
                      context: ScriptContext | None = None) -> PoorManOutpaintingParams:
    """A1111's positional order: [pixels, mask_blur, masked content (index or name), directions]."""
    pixels, blur, content, directions = positional(TITLE, args, 4)
    return PoorManOutpaintingParams(
        pixels=int_arg(TITLE, "pixels to expand", pixels, 128, 8, 256),
        mask_blur=int_arg(TITLE, "mask blur", blur, 4, 0, 64),
        masked_content=MaskedContent.FILL if content is None else _masked_content(content),
        directions=DIRECTIONS if directions is None else directions_arg(TITLE, directions))


PARAMS = PoorManOutpaintingParams  # what scripts.registry.run_with_params dispatches on


def run(engine: Any, request: Img2ImgRequest, params: PoorManOutpaintingParams,
        on_progress: ProgressCallback | None = None, control: JobControl | None = None,
        context: ScriptContext | None = None) -> GenerationResult:
    # 1. Validate first; the caller's request is never modified.
    base = request.replace(return_grid=False, grid_save=False)  # A1111's do_not_save_grid: no grid per call
    base.validate()
    if params.pixels >= min(base.width, base.height):
        raise RequestError("script_args", f"{TITLE}: pixels to expand {params.pixels} must be smaller than "
                                          f"the tile size {base.width}x{base.height} (they are the tiles' "
                                          f"overlap)")
    control = control or JobControl()

    # 2. The grown canvas and its mask.
    source = image_ops.flatten_onto(base.init_image, color_rgb(base.background_color))  # img2img_background_color
    left, right, up, down = margins(source.width, source.height, params)
    canvas, mask = expand_canvas(source, left, right, up, down, mask_overlap=params.mask_blur * 2)

    # 3. Inpaint the tiles that touch new area.
    image_grid = split_tiles(canvas, base.width, base.height, params.pixels)
    mask_grid = split_tiles(mask, base.width, base.height, params.pixels)
    inside = (left, up, canvas.width - right, canvas.height - down)
    work = [(tile, tile_mask) for tile, tile_mask in zip(image_grid.tiles(), mask_grid.tiles())
            if not _within(tile.x, tile.y, image_grid.tile_w, image_grid.tile_h, inside)]
    seed, subseed = resolve_seed(base.seed), resolve_seed(base.subseed)
    tile_request = _tile_request(base, image_grid.tile_w, image_grid.tile_h, params)
    progress = JobProgress(on_progress, len(work))
    result = new_result(base, seed, subseed, canvas.width, canvas.height)
    first_infotext = None
    for i, (tile, tile_mask) in enumerate(work):
        if control.interrupted:
            result.interrupted = True
            break
        text = f"tile {i + 1}/{len(work)}"
        out = engine.img2img(tile_request.replace(init_image=tile.image, mask=tile_mask.image, seed=seed + i),
                             progress.for_job(i, text), control)
        if out.interrupted:
            result.interrupted = True
            break
        if out.images:  # a skipped tile keeps the canvas pixels
            tile.image = out.images[0]
            first_infotext = first_infotext or out.infotexts[0]
    if first_infotext is not None:
        append_output(result, save_output(engine, base, Output(merge_tiles(image_grid), seed, subseed,
                                                               first_infotext)))
    return result


def _within(x: int, y: int, w: int, h: int, box: tuple[int, int, int, int]) -> bool:
    """A tile wholly inside the original picture: nothing new to paint there (A1111 skips it)."""
    return x >= box[0] and y >= box[1] and x + w <= box[2] and y + h <= box[3]


def _tile_request(base: Img2ImgRequest, tile_w: int, tile_h: int,
                  params: PoorManOutpaintingParams) -> Img2ImgRequest:
    width, height = (max(MIN_SIDE, math.ceil(side / 8) * 8) for side in (tile_w, tile_h))
    blur = min(params.mask_blur * 2, MAX_MASK_BLUR)  # A1111 doubles the blur; the request allows up to 64
    return base.replace(width=width, height=height, resize_mode=ResizeMode.JUST_RESIZE, n_iter=1,
                        batch_size=1, batch_images=(), save_images=False, mask_blur_x=blur, mask_blur_y=blur,
                        masked_content=params.masked_content,
                        inpaint_area=InpaintArea.WHOLE_PICTURE, mask_grow=0,
                        extra_generation_params={**base.extra_generation_params,
                                                 **outpainting_params(TITLE, params)})


def margins(width: int, height: int, params: PoorManOutpaintingParams) -> tuple[int, int, int, int]:
    """(left, right, up, down) growth of a width x height image: the canvas rounded up to a multiple of 64."""
    grow = [params.pixels if d in params.directions else 0 for d in DIRECTIONS]
    return outpaint_margins(width, height, *grow)

