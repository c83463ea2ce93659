"""Outpainting mk2 (A1111 scripts/outpainting_mk_2.py): grow one side at a time, seeding the new band with
noise shaped to the picture's own spectrum and colours.

For each chosen direction in the order left, right, up, down: paste the image on a canvas grown by that
side's margin (rounded up to a multiple of 64), make the new band plus `mask blur` pixels the mask, fill the
band with `matched_noise` (random noise whose Fourier magnitudes follow the source's, histogram-matched to
the source's colours), inpaint the strip next to the new edge (at most the request's width or height deep,
masked content "original", mask blur 4 x blur), paste the result back and crop to the grown size. The total
growth is shared between opposite sides like poor man's outpainting (canvas a multiple of 64).

Differences from A1111, deliberate: A1111 gives every batch the same seed (so batch count repeats one
picture); here batch n, item j is seed + n x batch_size + j, the engine's usual numbering. A1111 also passes
a narrower "latent mask"; the request has one mask. The 4 x mask blur is capped at the request's 64.
Recommended (A1111's hint): 80-100 steps, Euler a, denoising strength 0.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pipelines.fields import MIN_SIDE, InpaintArea, MaskedContent, ResizeMode
from pipelines.generation.engine import GenerationResult
from pipelines.generation.noise import resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images import image_ops
from pipelines.images.tiles import make_image_grid, outpaint_margins
from pipelines.options import color_rgb
from scripts.common import (
    DIRECTIONS,
    JobProgress,
    Output,
    ScriptContext,
    append_output,
    directions_arg,
    float_arg,
    int_arg,
    new_result,
    outpainting_params,
    positional,
    save_output,
)

TITLE = "Outpainting mk2"
RECOMMENDED = "Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8"
MAX_MASK_BLUR = 64  # Img2ImgRequest's mask_blur range


@dataclass(frozen=True)
class OutpaintingMk2Params:
    pixels: int = 128  # 8..256 step 8
    mask_blur: int = 8  # 0..64
    directions: tuple[str, ...] = DIRECTIONS
    noise_q: float = 1.0  # fall-off exponent, 0..4 (lower = more detail)
    color_variation: float = 0.05  # 0..1

    def __post_init__(self) -> None:
        int_arg(TITLE, "pixels to expand", self.pixels, 128, 8, 256)
        int_arg(TITLE, "mask blur", self.mask_blur, 8, 0, 64)
        float_arg(TITLE, "fall-off exponent", self.noise_q, 1.0, 0.0, 4.0)
        float_arg(TITLE, "color variation", self.color_variation, 0.05, 0.0, 1.0)
        object.__setattr__(self, "directions", directions_arg(TITLE, self.directions))


def parse_script_args(args: list[Any] | None, context: ScriptContext | None = None) -> OutpaintingMk2Params:
    """A1111's positional order: [info (ignored), pixels, mask_blur, directions, noise_q, color_variation]."""
    _info, pixels, blur, directions, noise_q, variation = positional(TITLE, args, 6)
    return OutpaintingMk2Params(
        pixels=int_arg(TITLE, "pixels to expand", pixels, 128, 8, 256),
        mask_blur=int_arg(TITLE, "mask blur", blur, 8, 0, 64),
        directions=DIRECTIONS if directions is None else directions_arg(TITLE, directions),
        noise_q=float_arg(TITLE, "fall-off exponent", noise_q, 1.0, 0.0, 4.0),
        color_variation=float_arg(TITLE, "color variation", variation, 0.05, 0.0, 1.0))


PARAMS = OutpaintingMk2Params  # what scripts.registry.run_with_params dispatches on


# 1. Matched noise (pure) ------------------------------------------------------------------------------------
def _fft2(data: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D FFT per channel with the shifts A1111 (g-diffuser) uses before and after."""
    return np.fft.ifftshift(np.fft.fft2(np.fft.fftshift(data, axes=(0, 1)), axes=(0, 1), norm="ortho"),
                            axes=(0, 1))


def _ifft2(data: np.ndarray) -> np.ndarray:
    return np.fft.ifftshift(np.fft.ifft2(np.fft.fftshift(data, axes=(0, 1)), axes=(0, 1), norm="ortho"),
                            axes=(0, 1))


def _falloff_window(rows: int, cols: int, std: float = 3.14) -> np.ndarray:
    """g-diffuser's "gaussian" window, mode 1 (in fact a Cauchy-like fall-off), rows x cols."""
    shortest = min(rows, cols)
    y = (np.arange(rows) / rows * 2 - 1) * (rows / shortest)
    x = (np.arange(cols) / cols * 2 - 1) * (cols / shortest)
    return (1 / ((y[:, None] ** 2 + 1) * (x[None, :] ** 2 + 1))) ** (std / 3.14)


def _match_histograms(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """skimage.exposure.match_histograms for float (N, C) arrays, channel by channel."""
    matched = np.empty_like(source)
    for c in range(source.shape[1]):
        values, index, counts = np.unique(source[:, c], return_inverse=True, return_counts=True)
        t_values, t_counts = np.unique(template[:, c], return_counts=True)
        quantiles = np.cumsum(counts) / source.shape[0]
        t_quantiles = np.cumsum(t_counts) / template.shape[0]
        matched[:, c] = np.interp(quantiles, t_quantiles, t_values)[index.ravel()]
    return matched


def matched_noise(image: np.ndarray, mask: np.ndarray, noise_q: float = 1.0,
                  color_variation: float = 0.05) -> np.ndarray:
    """Fill the masked part of image (H x W x 3 floats in 0..1; mask H x W in 0..1, 1 = new) with noise
    whose spectrum follows the unmasked picture's and whose colours are histogram-matched to it. The noise
    generator is fixed (seed 0), as in A1111: the result depends on the picture, not on the job's seed."""
    mask_rgb = np.repeat(mask[..., None], 3, axis=2)
    new_area, reference = mask > 1e-6, mask < 1e-3
    windowed = image * (1 - mask_rgb)
    windowed = windowed / max(windowed.max(), 1e-12) + image.mean() * mask_rgb
    with np.errstate(divide="ignore", invalid="ignore"):
        src_fft = _fft2(windowed)
        src_dist = np.abs(src_fft)
        src_phase = np.nan_to_num(src_fft / src_dist)
    rng = np.random.default_rng(0)
    noise = rng.random(image.shape)
    grey = noise.mean(axis=2, keepdims=True)
    noise = noise * color_variation + (1 - color_variation) * grey
    noise = np.real(_ifft2(_fft2(noise) * _falloff_window(*image.shape[:2])[..., None]))
    shaped = np.real(_ifft2(np.abs(_fft2(noise)) ** 2 * src_dist ** noise_q * src_phase))
    shaped -= shaped.min()
    shaped /= max(shaped.max(), 1e-12)
    if new_area.any() and reference.any():
        shaped[new_area] = _match_histograms(shaped[new_area], image[reference])
    return np.clip(image * (1 - mask_rgb) + shaped * mask_rgb, 0, 1)


# 2. One direction -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Side:
    name: str
    pixels: int

    @property
    def horizontal(self) -> bool:
        return self.name in ("left", "right")


def expand_canvas_mk2(image: Image.Image, side: _Side, mask_blur: int, params: OutpaintingMk2Params
                      ) -> tuple[Image.Image, Image.Image, tuple[int, int]]:
    """The grown canvas (size rounded up to 64) with matched noise in the new band, its mask (white = new
    band and `mask_blur` px into the picture), and the grown size before rounding."""
    grow_w, grow_h = (side.pixels, 0) if side.horizontal else (0, side.pixels)
    res_w, res_h = image.width + grow_w, image.height + grow_h
    canvas_w, canvas_h = math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64
    canvas = Image.new("RGB", (canvas_w, canvas_h))
    canvas.paste(image, (grow_w if side.name == "left" else 0, grow_h if side.name == "up" else 0))
    mask = Image.new("L", (canvas_w, canvas_h), 255)
    edge = side.pixels + mask_blur
    ImageDraw.Draw(mask).rectangle((
        edge if side.name == "left" else 0,
        edge if side.name == "up" else 0,
        canvas_w - edge if side.name == "right" else res_w,
        canvas_h - edge if side.name == "down" else res_h), fill=0)
    pixels, weights = (np.asarray(im, dtype=np.float64) / 255 for im in (canvas, mask))
    noised = matched_noise(pixels, weights, params.noise_q, params.color_variation)
    # Rounded, not truncated like A1111's astype: the kept picture must come back pixel for pixel.
    noised_image = Image.fromarray(np.clip(np.rint(noised * 255), 0, 255).astype(np.uint8), "RGB")
    return noised_image, mask, (res_w, res_h)


def _strip(canvas: Image.Image, side: _Side, image: Image.Image, width: int, height: int) -> tuple[int, ...]:
    """The region next to the new edge that is inpainted: at most the request's size across the new band."""
    strip_w = min(width, image.width + side.pixels) if side.horizontal else canvas.width
    strip_h = min(height, image.height + side.pixels) if not side.horizontal else canvas.height
    left = 0 if side.name == "left" else canvas.width - strip_w
    top = 0 if side.name == "up" else canvas.height - strip_h
    return left, top, left + strip_w, top + strip_h


# 3. The script ----------------------------------------------------------------------------------------------
def run(engine: Any, request: Img2ImgRequest, params: OutpaintingMk2Params,
        on_progress: ProgressCallback | None = None, control: JobControl | None = None,
        context: ScriptContext | None = None) -> GenerationResult:
    base = request.replace(return_grid=False, grid_save=False)  # A1111's do_not_save_grid: no grid per call
    base.validate()
    control = control or JobControl()
    source = image_ops.flatten_onto(base.init_image, color_rgb(base.background_color))  # img2img_background_color
    grow = [params.pixels if d in params.directions else 0 for d in DIRECTIONS]
    sides = [_Side(name, pixels) for name, pixels in zip(DIRECTIONS, outpaint_margins(source.width,
                                                                                      source.height, *grow))
             if pixels > 0]
    seed, subseed = resolve_seed(base.seed), resolve_seed(base.subseed)
    progress = JobProgress(on_progress, base.n_iter * len(sides))
    result = new_result(base, seed, subseed, source.width, source.height)
    finished: list[Output] = []
    for n in range(base.n_iter):
        for j in range(base.batch_size):
            item_seed = seed + n * base.batch_size + j
            image, infotext = source, None
            for d, side in enumerate(sides):
                text = f"{side.name} {d + 1}/{len(sides)}, batch {n + 1}/{base.n_iter}"
                image, infotext = _expand(engine, base, image, side, params, item_seed, subseed + j,
                                          progress.for_job(n * len(sides) + d, text), control, infotext)
                if image is None:
                    break
            if image is None:
                result.interrupted = control.interrupted
                break
            finished.append(save_output(engine, base, Output(image, item_seed, subseed + j, infotext or "")))
        if result.interrupted:
            break
    for output in finished:
        append_output(result, output)
    if finished:
        result.width, result.height = finished[0].image.size
    if len(finished) > 1:
        first = finished[0]
        grid = Output(make_image_grid([o.image for o in finished]), first.seed, first.subseed, first.infotext)
        append_output(result, save_output(engine, base, grid, kind="img2img-grids"))
    return result


def _expand(engine, base, image, side, params, seed, subseed, on_progress, control, infotext):
    """Grow `image` on one side; returns (grown image, infotext) or (None, None) when stopped."""
    if control.interrupted:
        return None, None
    canvas, mask, (res_w, res_h) = expand_canvas_mk2(image, side, params.mask_blur, params)
    region = _strip(canvas, side, image, base.width, base.height)
    strip_w, strip_h = region[2] - region[0], region[3] - region[1]
    width, height = (min(2048, max(MIN_SIDE, math.ceil(s / 8) * 8)) for s in (strip_w, strip_h))
    blur = min(params.mask_blur * 4, MAX_MASK_BLUR)
    strip_request = base.replace(
        init_image=canvas.crop(region), mask=mask.crop(region), batch_images=(), width=width, height=height,
        resize_mode=ResizeMode.JUST_RESIZE, batch_size=1, n_iter=1, seed=seed, subseed=subseed,
        mask_blur_x=blur, mask_blur_y=blur, masked_content=MaskedContent.ORIGINAL,
        inpaint_area=InpaintArea.WHOLE_PICTURE, mask_grow=0, save_images=False,
        extra_generation_params={**base.extra_generation_params, **outpainting_params(TITLE, params)})
    out = engine.img2img(strip_request, on_progress, control)
    if out.interrupted or not out.images:
        return None, None
    painted = out.images[0]
    if painted.size != (strip_w, strip_h):
        painted = painted.resize((strip_w, strip_h), Image.Resampling.LANCZOS)
    canvas.paste(painted, region[:2])
    return canvas.crop((0, 0, res_w, res_h)), infotext or out.infotexts[0]
