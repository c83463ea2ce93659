"""Pure tile and canvas geometry: SD upscale tiles (A1111 `images.split_grid` / `combine_grid`), outpainting
canvases, and the grid image of a batch (A1111 `images.image_grid`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

LANCZOS = Image.Resampling.LANCZOS


@dataclass
class Tile:
    """One tile: its top-left corner in the full image and its pixels (replace `image` after processing)."""

    x: int
    y: int
    image: Image.Image


@dataclass
class Grid:
    """Tiles row by row. Every tile is tile_w x tile_h; neighbours overlap by at least `overlap` pixels."""

    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int
    rows: list[list[Tile]] = field(default_factory=list)

    def tiles(self) -> Iterator[Tile]:
        """All tiles, row-major (the order SD upscale processes and seeds them)."""
        for row in self.rows:
            yield from row


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: evenly spaced, the first at 0 and the last flush with the end."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(i * step), length - tile) for i in range(count)]


def split_tiles(img: Image.Image, tile_w: int, tile_h: int, overlap: int) -> Grid:
    """Cut img into overlapping tiles (A1111 split_grid). An image side smaller than the tile gives a tile of
    the image's own length on that axis (A1111 would crop outside the image and pad with black)."""
    if tile_w <= 0 or tile_h <= 0:
        raise ValueError(f"tile size must be positive, got {tile_w}x{tile_h}")
    if not 0 <= overlap < min(tile_w, tile_h):
        limit = min(tile_w, tile_h) - 1
        raise ValueError(f"overlap {overlap} must be in 0..{limit} for {tile_w}x{tile_h} tiles")
    tile_w, tile_h = min(tile_w, img.width), min(tile_h, img.height)
    grid = Grid(tile_w, tile_h, img.width, img.height, overlap)
    for y in tile_starts(img.height, tile_h, overlap):
        xs = tile_starts(img.width, tile_w, overlap)
        grid.rows.append([Tile(x, y, img.crop((x, y, x + tile_w, y + tile_h))) for x in xs])
    return grid


def _ramp(width: int, height: int, horizontal: bool, overlap: int) -> Image.Image:
    """A1111's blend mask across an overlap: 0 at the old side rising linearly towards 255."""
    ramp = (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8)
    values = np.broadcast_to(ramp[None, :] if horizontal else ramp[:, None], (height, width))
    return Image.fromarray(np.ascontiguousarray(values), "L")


def _tile_pixels(grid: Grid, tile: Tile) -> Image.Image:
    # A processed tile may come back at the processing size; bring it back to the tile's size.
    image = tile.image.convert("RGB")
    if image.size != (grid.tile_w, grid.tile_h):
        image = image.resize((grid.tile_w, grid.tile_h), resample=LANCZOS)
    return image


def merge_tiles(grid: Grid) -> Image.Image:
    """Recombine tiles (A1111 combine_grid): each tile's first `overlap` columns (then each row's first
    `overlap` lines) fade in over its predecessor with a linear ramp; the rest is pasted as is."""
    overlap = grid.overlap
    image_w, tile_h = grid.image_w, grid.tile_h
    column_ramp = _ramp(overlap, tile_h, True, overlap) if overlap else None
    row_ramp = _ramp(image_w, overlap, False, overlap) if overlap else None
    combined = Image.new("RGB", (grid.image_w, grid.image_h))
    for row in grid.rows:
        row_image = Image.new("RGB", (image_w, tile_h))
        for tile in row:
            pixels = _tile_pixels(grid, tile)
            if tile.x == 0 or overlap == 0:
                row_image.paste(pixels, (tile.x, 0))
                continue
            row_image.paste(pixels.crop((0, 0, overlap, tile_h)), (tile.x, 0), column_ramp)
            row_image.paste(pixels.crop((overlap, 0, grid.tile_w, tile_h)), (tile.x + overlap, 0))
        y = row[0].y
        if y == 0 or overlap == 0:
            combined.paste(row_image, (0, y))
            continue
        combined.paste(row_image.crop((0, 0, image_w, overlap)), (0, y), row_ramp)
        combined.paste(row_image.crop((0, overlap, image_w, tile_h)), (0, y + overlap))
    return combined


def outpaint_margins(
    img_w: int, img_h: int, left: int, right: int, up: int, down: int, multiple: int = 64
) -> tuple[int, int, int, int]:
    """Poor man's outpainting margins: grow the canvas to a multiple of `multiple` and share the growth
    between the requested sides in proportion (A1111's integer arithmetic). An axis with no requested
    growth is left alone (A1111 rounds it anyway and leaves an unmasked black strip)."""

    def share(length: int, before: int, after: int) -> tuple[int, int]:
        if before + after == 0:
            return 0, 0
        extra = math.ceil((length + before + after) / multiple) * multiple - length
        before = before * extra // (before + after) if before > 0 else 0
        after = extra - before if after > 0 else 0
        return before, after

    (left, right), (up, down) = share(img_w, left, right), share(img_h, up, down)
    return left, right, up, down


def expand_canvas(
    img: Image.Image, left: int, right: int, up: int, down: int, *, mask_overlap: int = 0
) -> tuple[Image.Image, Image.Image]:
    """A bigger black canvas with img pasted at (left, up), and an "L" mask that is white on the new bands.

    `mask_overlap` extends the white mask that many pixels into the original on each side that grew, so the
    seam is repainted too (A1111 poor man's outpainting uses twice the mask blur).
    """
    if min(left, right, up, down, mask_overlap) < 0:
        raise ValueError(f"margins must be >= 0, got left={left} right={right} up={up} down={down}")
    canvas = Image.new(img.mode, (img.width + left + right, img.height + up + down))
    canvas.paste(img, (left, up))
    mask = Image.new("L", canvas.size, 255)
    keep_x1 = left + (mask_overlap if left else 0)
    keep_y1 = up + (mask_overlap if up else 0)
    keep_x2 = left + img.width - (mask_overlap if right else 0)
    keep_y2 = up + img.height - (mask_overlap if down else 0)
    if keep_x2 > keep_x1 and keep_y2 > keep_y1:
        ImageDraw.Draw(mask).rectangle((keep_x1, keep_y1, keep_x2 - 1, keep_y2 - 1), fill=0)
    return canvas, mask


def grid_rows(count: int, batch_size: int = 1, n_rows: int = -1, prevent_empty_spots: bool = False) -> int:
    """How many rows A1111's image_grid gives `count` images: n_rows > 0 as set; 0 = the batch size; -1 = auto,
    round(sqrt(count)), or with prevent_empty_spots the largest row count <= floor(sqrt(count)) dividing count.
    Never more rows than images."""
    if count < 1:
        raise ValueError("cannot make a grid of no images")
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = batch_size
    elif prevent_empty_spots:
        rows = math.floor(math.sqrt(count))
        while count % rows:
            rows -= 1
    else:
        rows = round(math.sqrt(count))
    return max(1, min(rows, count))


def make_image_grid(images: Sequence[Image.Image], rows: int | None = None,
                    background: tuple[int, int, int] | str = "black") -> Image.Image:
    """Images in a grid, row-major (A1111 image_grid; default rows = round(sqrt(n))). Every cell is as large as
    the largest image; a smaller image is centred in its cell on `background`, as are empty cells."""
    if not images:
        raise ValueError("cannot make a grid of no images")
    if rows is None:
        rows = grid_rows(len(images))
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    rows = min(rows, len(images))
    cols = math.ceil(len(images) / rows)
    cell_w, cell_h = (max(sizes) for sizes in zip(*(image.size for image in images)))
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), background)
    for i, image in enumerate(images):
        offset_x, offset_y = (cell_w - image.width) // 2, (cell_h - image.height) // 2
        grid.paste(image.convert("RGB"), (i % cols * cell_w + offset_x, i // cols * cell_h + offset_y))
    return grid
