"""SD upscale (A1111 scripts/sd_upscale.py): upscale, cut into overlapping tiles of the request's width x
height, img2img every tile, blend the tiles back together.

Steps: upscale the init image with the chosen upscaler to scale x its size floored to a multiple of 8 (as
A1111's Upscaler.upscale; "None" leaves the source as it is, whatever the scale, as A1111) -> split into tiles
(pipelines.images.tiles.split_tiles: evenly spaced, the last flush with the edge) -> tiles go through
img2img in batches of batch_size, batch k seeded start_seed + k (image j of a batch: + j, as in A1111) ->
merge_tiles (linear ramps across the overlaps) -> one image per n_iter, upscale n seeded from seed + n.
A batch of tiles is one engine call with one init image per batch item (Img2ImgRequest.batch_images).

Difference from A1111, deliberate: an interrupted run returns the merged image with unprocessed tiles left
as plainly upscaled pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.fields import MIN_SIDE, RequestError, ResizeMode
from pipelines.generation.engine import GenerationResult
from pipelines.generation.noise import resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images import image_ops
from pipelines.images.color_correction import apply_color_correction, color_reference
from pipelines.images.tiles import Tile, merge_tiles, split_tiles
from pipelines.limits import Limits
from pipelines.models.upscalers import list_upscalers, resolve_upscaler, target_size, upscale
from pipelines.options import color_rgb
from scripts.common import (
    JobProgress,
    Output,
    ScriptContext,
    append_output,
    float_arg,
    int_arg,
    new_result,
    positional,
    save_output,
)

TITLE = "SD upscale"
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class SdUpscaleParams:
    overlap: int = 64  # pixels shared by neighbouring tiles (UI 0..256 step 16)
    upscaler: str = "None"  # a name from list_upscalers (A1111's default: the first one, None)
    scale: float = 2.0  # 1..4

    def __post_init__(self) -> None:
        if self.overlap is None or self.scale is None or not isinstance(self.upscaler, str):
            raise RequestError("script_args", f"{TITLE}: overlap, upscaler (a name) and scale are required")
        int_arg(TITLE, "tile overlap", self.overlap, 64, 0, 256)
        float_arg(TITLE, "scale factor", self.scale, 2.0, 1.0, 4.0)

    @classmethod
    def from_script_args(cls, args: list[Any] | None, models_dir: Path | str | None) -> "SdUpscaleParams":
        """A1111's positional order: [info (ignored, ""), overlap, upscaler name or index, scale factor]."""
        _info, overlap, upscaler, scale = positional(TITLE, args, 4)
        name = "None"
        if upscaler is not None:
            if isinstance(upscaler, float) and upscaler.is_integer():
                upscaler = int(upscaler)
            try:
                name = resolve_upscaler(upscaler, models_dir).name
            except RequestError as exc:
                raise RequestError("script_args", f"{TITLE}: upscaler {exc.message}") from None
        return cls(overlap=int_arg(TITLE, "tile overlap", overlap, 64, 0, 256), upscaler=name,
                   scale=float_arg(TITLE, "scale factor", scale, 2.0, 1.0, 4.0))


PARAMS = SdUpscaleParams  # what scripts.registry.run_with_params dispatches on


def parse_script_args(args: list[Any] | None, context: ScriptContext | None = None) -> SdUpscaleParams:
    return SdUpscaleParams.from_script_args(args, (context or ScriptContext()).models_dir)


def upscaler_choices(models_dir: Path | str | None) -> list[str]:
    """The upscaler names the UI offers (index i here is script_args' index i)."""
    return [info.name for info in list_upscalers(models_dir)]


def check(request: Img2ImgRequest, params: SdUpscaleParams, limits: Limits,
          models_dir: Path | str | None = None) -> None:
    """The upscaled picture (one per n_iter) within the server's output limits, before any work."""
    image = request.init_image
    if not isinstance(image, Image.Image):
        return  # validate() names it
    size = image.size if params.upscaler == "None" else target_size(image.width, image.height, params.scale)
    try:
        limits.check_job("script_args", size[0], size[1], request.n_iter)
    except RequestError as exc:
        raise RequestError("script_args", f"{TITLE}: {exc.message}") from None


def tile_seeds(start_seed: int, tile_count: int, batch_size: int) -> list[int]:
    """A1111's seeds: batch k starts at start_seed + k (the previous batch's seed + 1), image j adds j.
    So with batch size > 1 neighbouring batches share seeds, exactly as in A1111."""
    return [start_seed + index // batch_size + index % batch_size for index in range(tile_count)]


def run(engine: Any, request: Img2ImgRequest, params: SdUpscaleParams,
        on_progress: ProgressCallback | None = None, control: JobControl | None = None,
        context: ScriptContext | None = None) -> GenerationResult:
    # 1. Validate everything first; the caller's request is never modified.
    base = request.replace(return_grid=False, grid_save=False)  # A1111's do_not_save_grid: no grid per call
    base.validate()
    context = context or ScriptContext()
    if params.overlap >= min(base.width, base.height):
        raise RequestError("script_args", f"{TITLE}: tile overlap {params.overlap} must be smaller than "
                                          f"the tile size {base.width}x{base.height} (the request's width "
                                          f"x height)")
    info = resolve_upscaler(params.upscaler, context.models_dir)
    check(base, params, getattr(engine, "limits", None) or Limits())
    control = control or JobControl()

    # 2. Upscale to scale x the source, floored to a multiple of 8; "None" tiles the source as it is (A1111).
    source = image_ops.flatten_onto(base.init_image, color_rgb(base.background_color))  # img2img_background_color
    # the upscaler models belong to the engine's ModelManager (which places and frees them) unless the
    # front end passed their owner explicitly
    owner = context.upscaler_models or getattr(getattr(engine, "models", None), "upscalers", None)
    upscaled = upscale(source, info, params.scale, context.models_dir, models=owner)
    size = upscaled.size

    # 3. Tiles through img2img in batches, then merged; once per n_iter.
    seed, subseed = resolve_seed(base.seed), resolve_seed(base.subseed)
    tile_count = len(list(split_tiles(upscaled, base.width, base.height, params.overlap).tiles()))
    batch_count = math.ceil(tile_count / base.batch_size)
    progress = JobProgress(on_progress, batch_count * base.n_iter)  # A1111's job count: batches
    extra = {**base.extra_generation_params, "SD upscale overlap": params.overlap,
             "SD upscale upscaler": info.name}
    if base.color_correction:
        extra["Color correction"] = True
    result = new_result(base, seed, subseed, size[0], size[1])
    for n in range(base.n_iter):
        grid = split_tiles(upscaled, base.width, base.height, params.overlap)
        work = _TileWork(engine, _tile_request(base, grid.tile_w, grid.tile_h, extra), list(grid.tiles()),
                         base.batch_size, subseed, progress, control, result, first_job=n * batch_count,
                         suffix=f", upscale {n + 1}/{base.n_iter}" if base.n_iter > 1 else "",
                         color_correction=base.color_correction)
        first_infotext = work.run(start_seed=seed + n)
        if first_infotext is not None:  # at least one tile was processed
            output = Output(merge_tiles(grid), seed + n, subseed, first_infotext)
            append_output(result, save_output(engine, base, output))
        if result.interrupted:
            break
    return result


def _tile_request(base: Img2ImgRequest, tile_w: int, tile_h: int, extra: dict[str, Any]) -> Img2ImgRequest:
    # A tile is the request's size unless the image is smaller than that; the engine needs a multiple of 8
    # (at least 64), and merge_tiles resizes a processed tile back to its place.
    width, height = (max(MIN_SIDE, math.ceil(side / 8) * 8) for side in (tile_w, tile_h))
    return base.replace(width=width, height=height, resize_mode=ResizeMode.JUST_RESIZE, n_iter=1,
                        batch_size=1, batch_images=(), color_correction=False, save_images=False,
                        extra_generation_params=extra)


@dataclass
class _TileWork:
    """img2img of one upscale's tiles, in place (tile.image replaced), batch by batch."""

    engine: Any
    tile_request: Img2ImgRequest
    tiles: list[Tile]
    batch_size: int
    subseed: int
    progress: JobProgress
    control: JobControl
    result: GenerationResult
    first_job: int = 0  # progress job of this upscale's first batch
    suffix: str = ""
    color_correction: bool = False

    def run(self, start_seed: int) -> str | None:
        """Process every tile; return the first processed tile's infotext (None: no tile was processed)."""
        seeds = tile_seeds(start_seed, len(self.tiles), self.batch_size)
        infotexts: list[str] = []
        for first in range(0, len(self.tiles), self.batch_size):
            indices = range(first, min(first + self.batch_size, len(self.tiles)))
            infotexts += self._run_batch(indices, [seeds[i] for i in indices])
            if self.result.interrupted:
                break
        return infotexts[0] if infotexts else None

    def _run_batch(self, indices: range, seeds: list[int]) -> list[str]:
        """One batch of tiles through one engine call (one UNet batch): item j gets seed + j and variation
        seed subseed + j, as in A1111. Colour correction, when asked for, matches each tile to its own
        source tile (A1111 keeps one reference per init image), so the script does it, not the engine."""
        if self.control.interrupted:
            self.result.interrupted = True
            return []
        sources = [self.tiles[i].image for i in indices]
        job = self.first_job + indices[0] // self.batch_size
        request = self.tile_request.replace(init_image=sources[0], batch_images=tuple(sources),
                                            batch_size=len(sources), seed=seeds[0], subseed=self.subseed)
        out = self.engine.img2img(request, self.progress.for_job(job, self._label(indices)), self.control)
        if out.interrupted:
            self.result.interrupted = True  # the batch's tiles keep their plainly upscaled pixels
        if len(out.images) != len(sources):  # skipped (or interrupted): nothing of this batch came back
            self.result.skipped_batches += 0 if out.interrupted else 1
            return []
        for index, source, image in zip(indices, sources, out.images):
            self.tiles[index].image = image if not self.color_correction else \
                apply_color_correction(color_reference(source), image)
        return list(out.infotexts)

    def _label(self, indices: range) -> str:
        count = len(self.tiles)
        if len(indices) == 1:
            return f"tile {indices[0] + 1}/{count}{self.suffix}"
        return f"tiles {indices[0] + 1}-{indices[-1] + 1}/{count}{self.suffix}"
