"""Extras: A1111's postprocessing "Upscale" (scripts/postprocessing_upscale.py over modules/postprocessing.py).

One image, top to bottom: plan the sizes (scale by, or scale to with an optional centred crop; A1111's max
side length) -> upscaler 1 -> upscaler 2 at its visibility, blended over it (Image.blend) -> crop -> the
"postprocessing" text ("Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos") -> saved to
outputs/extras-images/ (no date folder: A1111 saves extras with no_prompt=True) as NNNNN.png, or under the
source's own name in a batch, the source's own "parameters" text kept beside "postprocessing" and "extras".

A run of many images is ONE job in the engine's queue (kind "extras"), so it never interleaves with a
generation; Interrupt stops before the next image, Skip drops the current one. Input and output sizes are
bounded by pipelines/limits.py: in-memory images are checked before the job is queued, files of a folder
as they are opened (an unreadable or oversized file is reported and the batch goes on).
"""

from __future__ import annotations

import enum
import html
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.progress import JobControl, ProgressCallback, ProgressUpdate
from pipelines.generation.queue import EXTRAS
from pipelines.io.infotext import quote_value
from pipelines.io.outputs import PNG_INFO_KEY, read_infotext, save_failure_notice, save_image
from pipelines.limits import Limits
from pipelines.models.upscalers import UpscalerInfo, resolve_upscaler, target_size, upscale

OUTPUT_KIND = "extras-images"  # A1111's outdir_extras_samples, under outputs/
MAX_SCALE = 16.0  # the most pipelines.models.upscalers.upscale takes
FORMATS = ("png", "jpg", "jpeg", "webp")
# PNG text chunks a source carries that are not worth copying (PIL's own keys, A1111's IGNORED_INFO_KEYS).
_NOT_TEXT = {"dpi", "gamma", "srgb", "icc_profile", "exif", "transparency", "aspect", "chromaticity"}


class ExtrasResizeMode(enum.IntEnum):
    SCALE_BY = 0  # upscaling_resize x the size (A1111's "Scale by" tab; the API's resize_mode 0)
    SCALE_TO = 1  # upscaling_resize_w x upscaling_resize_h (A1111's "Scale to" tab)


@dataclass(frozen=True)
class ExtrasRequest:
    """A1111's ExtrasBaseRequest, upscale part (face restoration is not part of this project)."""

    resize_mode: ExtrasResizeMode = ExtrasResizeMode.SCALE_BY
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    upscaler_2_visibility: float = 0.0
    max_side_length: int = 0  # A1111's UI "Max side length" (0: none); the API has no such field
    samples_format: str = "png"

    def validate(self) -> None:
        """Types and ranges, each error naming its field (A1111's API bounds, our upscaler's scale cap)."""
        try:
            ExtrasResizeMode(self.resize_mode)
        except ValueError:
            raise RequestError("resize_mode", f"{self.resize_mode!r} is not 0 (scale by) or 1 (scale to)") from None
        _number("upscaling_resize", self.upscaling_resize, 0, MAX_SCALE, low_open=True)
        _number("upscaler_2_visibility", self.upscaler_2_visibility, 0, 1)
        for name in ("upscaling_resize_w", "upscaling_resize_h", "max_side_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_side_length"
                                                                                else 1):
                raise RequestError(name, f"{value!r} is not a whole number of pixels"
                                         f"{' (0: no limit)' if name == 'max_side_length' else ' >= 1'}")
        if self.samples_format.lower() not in FORMATS:
            raise RequestError("samples_format", f"{self.samples_format!r} is not one of {', '.join(FORMATS)}")


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or not (low < value if low_open else low <= value) or value > high:
        bracket = "(" if low_open else "["
        raise RequestError(name, f"{value!r} is not a number in {bracket}{low:g}, {high:g}]")


# 1. Sizes (pure) ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpscalePlan:
    scale: float  # the factor the upscalers are called with
    crop: tuple[int, int] | None  # the canvas the upscaled picture is centred on (Scale to + Crop to fit)
    info: dict[str, Any]  # the postprocessing pairs the sizes contribute, in A1111's order

    def output_size(self, size: tuple[int, int], upscaler: UpscalerInfo) -> tuple[int, int]:
        """The final size of a `size` picture through `upscaler` (None leaves the size; A1111 UpscalerNone)."""
        if self.crop is not None:
            return self.crop
        return size if upscaler.name == "None" else target_size(size[0], size[1], self.scale)

    def upscaled_size(self, size: tuple[int, int], upscaler: UpscalerInfo) -> tuple[int, int]:
        """The upscaler's own output size, before any crop (what the memory is spent on)."""
        return size if upscaler.name == "None" else target_size(size[0], size[1], self.scale)


def limit_size_by_one_dimension(width: float, height: float, limit: int) -> tuple[int, int]:
    """A1111's limit_size_by_one_dimention: the longer side brought down to `limit`, aspect kept (floored)."""
    if height > width and height > limit:
        width, height = limit * width // height, limit
    elif width > limit:
        width, height = limit, limit * height // width
    return int(width), int(height)


def plan_upscale(size: tuple[int, int], req: ExtrasRequest) -> UpscalePlan:
    """The factor, crop and infotext pairs of A1111's ScriptPostprocessingUpscale.upscale for a `size` image."""
    width, height = size
    if req.resize_mode == ExtrasResizeMode.SCALE_TO:
        to_w, to_h = req.upscaling_resize_w, req.upscaling_resize_h
        info: dict[str, Any] = {"Postprocess upscale to": f"{to_w}x{to_h}"}
        crop = (to_w, to_h) if req.upscaling_crop else None
        return UpscalePlan(max(to_w / width, to_h / height), crop, info)
    by = float(req.upscaling_resize)
    info = {"Postprocess upscale by": by}
    if req.max_side_length and max(width, height) * by > req.max_side_length:
        to_w, to_h = limit_size_by_one_dimension(width * by, height * by, req.max_side_length)
        info["Max side length"] = req.max_side_length
        return UpscalePlan(max(to_w / width, to_h / height), None, info)
    return UpscalePlan(by, None, info)


def crop_centred(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A1111's "Crop to fit": the picture centred on a black canvas of `size` (cut where it overhangs)."""
    canvas = Image.new("RGB", size)
    canvas.paste(image, (size[0] // 2 - image.width // 2, size[1] // 2 - image.height // 2))
    return canvas


def postprocessing_text(info: dict[str, Any]) -> str:
    """A1111's postprocessing infotext: "Key: value" pairs (a pair whose key equals its value: the key alone)."""
    return ", ".join(k if k == v else f"{k}: {quote_value(str(v))}" for k, v in info.items() if v is not None)


def html_info(text: str) -> str:
    """A1111's plaintext_to_html: what html_info carries."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


# 2. One image ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upscalers:
    first: UpscalerInfo
    second: UpscalerInfo | None  # None: not used (named "None", or visibility 0)


def resolve_upscalers(req: ExtrasRequest, models_dir: Path | str | None) -> Upscalers:
    """Both upscalers by name, each error naming its field (A1111 asserts the names exist)."""
    found = []
    for name in ("upscaler_1", "upscaler_2"):
        try:
            found.append(resolve_upscaler(getattr(req, name), models_dir))
        except RequestError as exc:
            raise RequestError(name, exc.message) from None
    second = found[1] if found[1].name != "None" and req.upscaler_2_visibility > 0 else None
    return Upscalers(found[0], second)


def upscale_picture(image: Image.Image, req: ExtrasRequest, chosen: Upscalers, models_dir: Path | str | None,
                    models: Any) -> tuple[Image.Image, str]:
    """(the upscaled RGB picture, its postprocessing text). Upscaler 1 "None": the picture as it is, no text
    (A1111 returns before upscaling). `models`: the ModelManager's UpscalerModels (model upscalers)."""
    image = image.convert("RGB")
    if chosen.first.name == "None":
        return image, ""
    plan = plan_upscale(image.size, req)
    info = dict(plan.info)

    def one(upscaler: UpscalerInfo) -> Image.Image:
        out = upscale(image, upscaler, plan.scale, models_dir, models=models)
        if plan.crop is not None:
            out = crop_centred(out, plan.crop)
            info["Postprocess crop to"] = f"{out.width}x{out.height}"
        return out

    picture = one(chosen.first)
    info["Postprocess upscaler"] = chosen.first.name
    if chosen.second is not None:
        picture = Image.blend(picture, one(chosen.second).convert(picture.mode), req.upscaler_2_visibility)
        info["Postprocess upscaler 2"] = chosen.second.name
    return picture, postprocessing_text(info)


def source_text(image: Image.Image) -> dict[str, str]:
    """The source's text to keep (A1111 read_info_from_image): its PNG text chunks, "parameters" also from EXIF."""
    kept = {k: v for k, v in (image.info or {}).items()
            if isinstance(k, str) and isinstance(v, str) and k.lower() not in _NOT_TEXT}
    parameters = read_infotext(image)
    if parameters:
        kept[PNG_INFO_KEY] = parameters
    return kept


# 3. A run ----------------------------------------------------------------------------------------------------
@dataclass
class ExtrasSource:
    """One picture to process: in memory (`image`) or a file opened when its turn comes (`path`)."""

    image: Image.Image | None = None
    path: Path | None = None
    name: str | None = None  # the source's file name: batches save under it (A1111 use_original_name_batch)
    label: str = "image"  # what errors about it name (the API field, or the file)


@dataclass
class ExtrasResult:
    images: list[Image.Image] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)  # each image's postprocessing text
    texts: list[dict[str, str]] = field(default_factory=list)  # each image's PNG text chunks (source's + ours)
    paths: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # unreadable files, saving failures...
    interrupted: bool = False

    @property
    def html_info(self) -> str:
        return html_info(self.infotexts[-1] if self.infotexts else "")


def check_output(size: tuple[int, int], req: ExtrasRequest, chosen: Upscalers, limits: Limits, label: str) -> None:
    """The picture's upscaled size within --max-output-pixels, and the factor within the upscaler's cap."""
    plan = plan_upscale(size, req)
    field_name = "upscaling_resize" if req.resize_mode == ExtrasResizeMode.SCALE_BY else "upscaling_resize_w"
    if chosen.first.name == "None":
        return
    if plan.scale > MAX_SCALE:
        raise RequestError(field_name, f"{label} of {size[0]}x{size[1]} would need a scale of {plan.scale:.3g}, "
                                       f"more than the {MAX_SCALE:g} an upscaler is run with")
    widest = max(plan.upscaled_size(size, chosen.first), plan.output_size(size, chosen.first),
                 key=lambda s: s[0] * s[1])
    try:
        limits.check_job(field_name, widest[0], widest[1], 1)
    except RequestError as exc:
        raise RequestError(field_name, f"{label}: {exc.message}") from None


def run_extras(engine: Any, req: ExtrasRequest, sources: Iterable[ExtrasSource], *, save: bool = True,
               outdir: Path | None = None, control: JobControl | None = None,
               on_progress: ProgressCallback | None = None) -> ExtrasResult:
    """Upscale every source as ONE job in `engine.queue`; save to `outdir` (default outputs/extras-images)."""
    req.validate()
    models_dir = engine.models.settings.models_dir
    chosen = resolve_upscalers(req, models_dir)
    sources = list(sources)
    for source in sources:  # in-memory pictures: refused before anything is queued
        if source.image is not None:
            check_output(source.image.size, req, chosen, engine.limits, source.label)
    folder = Path(outdir) if outdir is not None else Path(engine.outputs_root) / OUTPUT_KIND
    result = ExtrasResult()
    report = on_progress or (lambda update: None)
    started = time.monotonic()
    with engine.queue.hold(EXTRAS, control) as job:
        for index, source in enumerate(sources):
            if job.control.interrupted:
                result.interrupted = True
                break
            update = ProgressUpdate(index, len(sources), 0, 1, time.monotonic() - started, text=source.name or "")
            engine.queue.report(update)
            report(update)
            image = source.image if source.image is not None else _open_file(source, engine.limits, result)
            if image is None:
                continue
            job.control.begin_batch()  # Skip drops this picture (A1111 `state.skipped`)
            try:
                if source.image is None:
                    check_output(image.size, req, chosen, engine.limits, source.label)
                picture, text = upscale_picture(image, req, chosen, models_dir, engine.models.upscalers)
                skipped = job.control.take_skip()
            except RequestError as exc:
                if source.image is not None:
                    raise
                result.notices.append(f"{source.label}: {exc.message}; skipped")
                continue
            finally:
                job.control.end_batch()
            if not skipped:
                _keep(result, picture, text, source_text(image), source, req, folder if save else None)
    return result


def _open_file(source: ExtrasSource, limits: Limits, result: ExtrasResult) -> Image.Image | None:
    """A folder's file, its declared size checked before its pixels are decoded; None (and a notice) when it
    cannot be read, so the batch goes on (A1111 skips it silently)."""
    try:
        image = Image.open(source.path)
        limits.check_image_size(source.label, image.size)
        image.load()
        return image
    except RequestError as exc:
        result.notices.append(f"{exc.message}; skipped")
    except Exception as exc:  # noqa: BLE001 - PIL raises assorted errors on unreadable files
        result.notices.append(f"{source.label}: not a readable image ({type(exc).__name__}); skipped")
    return None


def _keep(result: ExtrasResult, picture: Image.Image, text: str, kept: dict[str, str], source: ExtrasSource,
          req: ExtrasRequest, folder: Path | None) -> None:
    chunks = {**kept, "postprocessing": text, "extras": text}  # A1111 writes both keys
    picture.info = dict(chunks)  # the API's base64 PNG carries them too (A1111 encode_pil_to_base64)
    result.images.append(picture)
    result.infotexts.append(text)
    result.texts.append(chunks)
    if folder is None:
        return
    try:
        result.paths.append(save_image(picture, text, folder, None, req.samples_format.lower(),
                                       text_chunks=chunks, preferred_name=_stem(source.name)))
    except OSError as exc:  # the picture is still shown / returned
        notice = save_failure_notice(exc, folder)
        if notice not in result.notices:
            result.notices.append(notice)


def _stem(name: str | None) -> str | None:
    """A source's file name without folder or extension, when usable as an output name."""
    if not name:
        return None
    stem = os.path.splitext(os.path.basename(name.replace("\\", "/")))[0].strip()
    return stem if stem and not stem.startswith(".") else None


def folder_sources(input_dir: Path) -> list[ExtrasSource]:
    """A folder's files in name order, hidden ones left out (A1111 shared.listfiles); read when their turn comes."""
    names = sorted((n for n in os.listdir(input_dir) if not n.startswith(".")), key=_natural_key)
    paths = [Path(input_dir) / n for n in names]
    return [ExtrasSource(path=p, name=p.name, label=p.name) for p in paths if p.is_file()]


def _natural_key(name: str) -> list[Any]:
    """img2 before img10 (A1111's natural_sort_key)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
