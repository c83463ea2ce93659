"""A1111's grid: a run that gives more than one image also gives them side by side in one picture.

As A1111's process_images ends (modules/processing.py): with `return_grid` the grid goes first in the images,
with the first image's infotext first in the infotexts (the seeds lists keep only the real images, so
`index_of_first_image` = 1 says where they start); with `grid_save` it is saved in img2img-grids/<date>/ as
grid-NNNN.png. Row count: A1111's `n_rows` rule (pipelines/images/tiles.py grid_rows).

Generic over the request: txt2img passes its own request (same option field names) and grids folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.images.tiles import grid_rows, make_image_grid
from pipelines.io.outputs import dated_output_dir, save_failure_notice, save_image
from pipelines.options import BY_KEY, color_rgb

GRID_OPTIONS = ("return_grid", "grid_save", "grid_format", "grid_extended_filename", "grid_only_if_multiple",
                "grid_prevent_empty_spots", "n_rows", "grid_background_color")


def grid_setting(request: Any, name: str) -> Any:
    """The request's value of a grid option, or the option's default when the request has no such field."""
    return getattr(request, name, BY_KEY[name].default)


def wants_grid(request: Any, count: int) -> bool:
    """A1111: a grid when it is returned or saved, unless there is only one image (grid_only_if_multiple)."""
    if count < 1 or (count < 2 and grid_setting(request, "grid_only_if_multiple")):
        return False
    return bool(grid_setting(request, "return_grid") or grid_saved(request))


def grid_saved(request: Any) -> bool:
    # A1111's API sets do_not_save_grid = not save_images: a run that saves nothing saves no grid either.
    return bool(grid_setting(request, "grid_save") and getattr(request, "save_images", True))


def build_grid(request: Any, images: list) -> Any:
    """The grid picture of `images` with the request's row rule and background colour."""
    rows = grid_rows(len(images), getattr(request, "batch_size", 1), grid_setting(request, "n_rows"),
                     grid_setting(request, "grid_prevent_empty_spots"))
    return make_image_grid(images, rows, color_rgb(grid_setting(request, "grid_background_color")))


def add_grid(result: Any, request: Any, grids_dir: Path) -> Any:
    """Add the grid of result.images to `result` (a GenerationResult) as A1111 does; returns the result.

    grids_dir: the grids folder (request.outdir_grids when set, e.g. outputs/img2img-grids); saved under its
    dated sub-folder. A save that fails is a notice: the grid is still returned.
    """
    if getattr(result, "index_of_first_image", 0) or not wants_grid(request, len(result.images)):
        return result  # already has one (never two), or none is wanted
    grid = build_grid(request, result.images)
    infotext = result.infotexts[0] if result.infotexts else ""
    path = None
    if grid_saved(request):
        folder = Path(getattr(request, "outdir_grids", None) or grids_dir)
        seed = result.seeds[0] if grid_setting(request, "grid_extended_filename") and result.seeds else None
        try:
            path = save_image(grid, infotext, dated_output_dir(folder.parent, folder.name), seed,
                              grid_setting(request, "grid_format"), basename="grid",
                              quality=getattr(request, "jpeg_quality", 80))
        except OSError as exc:
            notice = save_failure_notice(exc, folder)
            if notice not in result.notices:
                result.notices.append(notice)
    result.grid_path = path
    if grid_setting(request, "return_grid"):
        result.images.insert(0, grid)
        result.infotexts.insert(0, infotext)
        if path is not None and len(result.paths) == len(result.images) - 1:
            result.paths.insert(0, path)  # the gallery shows saved files when every image has one
        result.index_of_first_image = 1
    return result
