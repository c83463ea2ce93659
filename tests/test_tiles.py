"""Exact tile, canvas and grid geometry (pipelines/images/tiles.py)."""

import numpy as np
import pytest
from PIL import Image

from pipelines.images.tiles import (
    expand_canvas,
    make_image_grid,
    merge_tiles,
    outpaint_margins,
    split_tiles,
    tile_starts,
)


def noise_image(width, height, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def arr(img):
    return np.asarray(img).astype(np.int32)


# split / merge ---------------------------------------------------------------------------------------------


def test_tile_positions_are_evenly_spaced_with_last_flush():
    # A1111: cols = ceil((1000 - 64) / (512 - 64)) = 3, dx = (1000 - 512) / 2 = 244.
    assert tile_starts(1000, 512, 64) == [0, 244, 488]
    # ceil((1024 - 64) / 448) = 3, dx = 256.
    assert tile_starts(1024, 512, 64) == [0, 256, 512]
    # ceil((700 - 64) / 448) = 2 -> [0, 188]; int() truncation: ceil((1001-64)/448)=3, dx=244.5 -> 244
    assert tile_starts(700, 512, 64) == [0, 188]
    assert tile_starts(1001, 512, 64) == [0, 244, 489]
    assert tile_starts(512, 512, 64) == [0]


def test_split_tiles_crops_each_tile_at_its_position():
    img = noise_image(1000, 600)
    grid = split_tiles(img, 512, 512, 64)
    assert (grid.tile_w, grid.tile_h, grid.image_w, grid.image_h, grid.overlap) == (512, 512, 1000, 600, 64)
    positions = [(t.x, t.y) for t in grid.tiles()]
    assert positions == [(0, 0), (244, 0), (488, 0), (0, 88), (244, 88), (488, 88)]
    for tile in grid.tiles():
        assert tile.image.size == (512, 512)
        assert np.array_equal(arr(tile.image), arr(img)[tile.y : tile.y + 512, tile.x : tile.x + 512])


@pytest.mark.parametrize(
    ("size", "overlap"), [((1000, 600), 64), ((1024, 1024), 64), ((777, 513), 32), ((640, 640), 0)]
)
def test_split_then_merge_returns_the_image(size, overlap):
    img = noise_image(*size, seed=1)
    merged = merge_tiles(split_tiles(img, 512, 512, overlap))
    assert merged.size == img.size
    assert np.abs(arr(merged) - arr(img)).max() <= 1


def test_merge_blends_linearly_across_the_overlap():
    img = Image.new("RGB", (576, 128))  # ceil((576 - 64) / 448) = 2 tiles, at 0 and 64
    grid = split_tiles(img, 512, 128, 64)
    assert [t.x for t in grid.tiles()] == [0, 64]
    first, second = grid.rows[0]
    first.image = Image.new("RGB", (512, 128), (0, 0, 0))
    second.image = Image.new("RGB", (512, 128), (255, 255, 255))
    row = arr(merge_tiles(grid))[0, :, 0]
    assert (row[:64] == 0).all() and (row[128:] == 255).all()
    ramp = row[64:128]
    assert ramp[0] == 0 and np.all(np.diff(ramp) >= 0) and abs(int(ramp[32]) - 127) <= 2


def test_image_smaller_than_tile_is_one_tile_of_its_own_size():
    img = noise_image(300, 200, seed=2)
    grid = split_tiles(img, 512, 512, 64)
    tiles = list(grid.tiles())
    assert len(tiles) == 1 and (tiles[0].x, tiles[0].y) == (0, 0) and tiles[0].image.size == (300, 200)
    assert np.array_equal(arr(merge_tiles(grid)), arr(img))


def test_merge_resizes_tiles_returned_at_processing_size():
    img = Image.new("RGB", (300, 200), (10, 20, 30))
    grid = split_tiles(img, 512, 512, 64)
    for tile in grid.tiles():
        tile.image = Image.new("RGB", (512, 512), (40, 50, 60))  # processed at 512x512
    merged = merge_tiles(grid)
    assert merged.size == (300, 200) and (arr(merged) == (40, 50, 60)).all()


def test_split_rejects_bad_overlap():
    with pytest.raises(ValueError):
        split_tiles(noise_image(100, 100), 64, 64, 64)
    with pytest.raises(ValueError):
        split_tiles(noise_image(100, 100), 64, 64, -1)


# outpainting canvas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("margins", "offset", "band"),
    [
        ((16, 0, 0, 0), (16, 0), (slice(None), slice(0, 16))),
        ((0, 16, 0, 0), (0, 0), (slice(None), slice(40, 56))),
        ((0, 0, 8, 0), (0, 8), (slice(0, 8), slice(None))),
        ((0, 0, 0, 8), (0, 0), (slice(30, 38), slice(None))),
    ],
)
def test_expand_canvas_per_direction(margins, offset, band):
    img = noise_image(40, 30, seed=3)
    left, right, up, down = margins
    canvas, mask = expand_canvas(img, left, right, up, down)
    assert canvas.size == mask.size == (40 + left + right, 30 + up + down)
    ox, oy = offset
    assert np.array_equal(arr(canvas)[oy : oy + 30, ox : ox + 40], arr(img))
    expected = np.zeros((mask.height, mask.width), dtype=np.int32)
    expected[band] = 255
    assert np.array_equal(arr(mask), expected)


def test_expand_canvas_all_sides_with_mask_overlap():
    img = noise_image(40, 30, seed=4)
    canvas, mask = expand_canvas(img, 8, 16, 4, 12, mask_overlap=2)
    assert canvas.size == (64, 46)
    m = arr(mask)
    # Kept (black) area: the original inset by 2 px on every side that grew.
    expected = np.full((46, 64), 255, dtype=np.int32)
    expected[4 + 2 : 4 + 30 - 2, 8 + 2 : 8 + 40 - 2] = 0
    assert np.array_equal(m, expected)
    assert (arr(canvas)[:4] == 0).all()  # new area starts black


def test_expand_canvas_overlap_only_on_grown_sides():
    _, mask = expand_canvas(noise_image(20, 20), 8, 0, 0, 0, mask_overlap=3)
    m = arr(mask)
    assert (m[:, :11] == 255).all() and (m[:, 11:] == 0).all()


def test_outpaint_margins_rounds_canvas_to_multiple_of_64():
    # 500 + 128 + 0 -> 640: all 140 px go left. 300 + 64 + 64 -> 448: 148 shared 74/74.
    assert outpaint_margins(500, 300, 128, 0, 64, 64) == (140, 0, 74, 74)
    # 384 + 100 + 50 -> 576: 192 px split in proportion, 192 * 100 // 150 = 128 left, 64 right.
    # The height got no growth, so it is not rounded up (300 is not a multiple of 64).
    assert outpaint_margins(384, 300, 100, 50, 0, 0) == (128, 64, 0, 0)


# grid of outputs -------------------------------------------------------------------------------------------


def test_image_grid_layout():
    colours = [(i * 30, 0, 0) for i in range(5)]
    images = [Image.new("RGB", (10, 8), c) for c in colours]
    grid = make_image_grid(images)  # round(sqrt(5)) = 2 rows, 3 cols
    assert grid.size == (30, 16)
    for i, colour in enumerate(colours):
        assert grid.getpixel((i % 3 * 10 + 5, i // 3 * 8 + 4)) == colour
    assert grid.getpixel((25, 12)) == (0, 0, 0)  # empty last cell stays black
    assert make_image_grid(images, rows=1).size == (50, 8)
    assert make_image_grid(images[:1]).size == (10, 8)
    with pytest.raises(ValueError):
        make_image_grid([])
