"""Small deterministic test pictures and masks shared by the engine tests."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def blocky_picture(w: int = 64, h: int = 64, seed: int = 3) -> Image.Image:
    """Random colours in 8x8 blocks: every latent pixel differs, and the VAE's 8x8 grid lines up with them."""
    rng = np.random.RandomState(seed)
    return Image.fromarray(np.kron(rng.randint(0, 255, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype("uint8"))


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """An "L" mask, white (redraw) inside `box` (inclusive corners), black elsewhere."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask
