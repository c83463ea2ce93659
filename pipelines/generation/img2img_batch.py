"""The img2img Batch tab's work (A1111 modules/img2img.py process_batch), without any front end.

Every picture of an input folder goes through one img2img run with the same parameters:
1. the folders are checked (inside the data dir, existing, readable; the output folder writable);
2. the pictures are listed as A1111 walks them (sub-folders too, natural order, .png .jpg .jpeg .webp .tif .tiff);
3. for each picture: read it (an unreadable file is a notice and the batch goes on), find its mask when a mask
   folder is given (the only mask, or the one with the picture's stem; none found: skipped, as A1111), take the
   chosen "PNG info" parameters from its infotext (or from the same-named file of the PNG info folder), run;
4. the images go to the output folder as A1111 names them (<NNNNN>-<stem>.png, <NNNNN>-<stem>-<k>.png when a
   picture gives several), or are saved normally when no output folder is given.
The whole folder is one job: Interrupt stops it (the rest is not run); Skip drops the current batch, as A1111.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageOps

from pipelines.fields import RequestError
from pipelines.generation.noise import resolve_seed
from pipelines.generation.progress import JobControl, ProgressCallback, ProgressUpdate
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images.image_ops import scaled_size
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext, save_failure_notice, save_image
from pipelines.options import samples_dir

PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")  # A1111 1.10's batch list
# The infotext fields the "PNG info" option can take, as A1111's checkbox group names them.
PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps", "Model hash")
SHOW_RESULTS_LIMIT = 32  # A1111's img2img_batch_show_results_limit: the gallery shows the first 32 images

Runner = Callable[[Img2ImgRequest, ProgressCallback, JobControl], Any]  # request -> GenerationResult


@dataclass(frozen=True)
class BatchOptions:
    input_dir: str
    output_dir: str = ""  # "": save as a normal run does (outputs/img2img-images/<date>/)
    mask_dir: str = ""  # "": no masks (plain img2img); otherwise every picture is inpainted with its mask
    use_png_info: bool = False
    png_info_props: tuple[str, ...] = ()
    png_info_dir: str = ""  # "": each picture's own infotext
    scale_by: float | None = None  # "Resize by": each picture's own size times this (None: the request's size)


@dataclass
class BatchResult:
    images: list[Image.Image] = field(default_factory=list)  # the first SHOW_RESULTS_LIMIT outputs
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    # The shown images' files when saved normally (the gallery then serves them; files outside outputs/ it may
    # not serve, so output-folder files are listed in `written` only).
    paths: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # the files written to the output folder
    notices: list[str] = field(default_factory=list)
    pictures: int = 0  # pictures found
    processed: int = 0  # pictures that ran
    interrupted: bool = False
    skipped_batches: int = 0
    index_of_first_image: int = 0  # no grid: every picture's images are the results


# 1. Folders --------------------------------------------------------------------------------------------------
def check_folder(data_dir: Path, value: str, label: str, *, output: bool = False) -> Path | None:
    """The folder a Batch field names, resolved as the output-folder options are (pipelines/options.py
    samples_dir: relative to the data dir, never outside it); None for a blank field. RequestError(label)
    when it does not exist, is not a folder or cannot be read (an output folder is created, and must be
    writable)."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = samples_dir(data_dir, value, label)
    if output:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RequestError(label, f"{value!r}: cannot create the folder ({exc.strerror or exc})") from None
    if not path.exists():
        raise RequestError(label, f"{value!r} does not exist ({path})")
    if not path.is_dir():
        raise RequestError(label, f"{value!r} is not a folder ({path})")
    if not os.access(path, os.R_OK | os.X_OK) or (output and not os.access(path, os.W_OK)):
        raise RequestError(label, f"{value!r}: no permission to {'write' if output else 'read'} it ({path})")
    return path


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_pictures(folder: Path) -> list[Path]:
    """A1111's shared.walk_files: the pictures in folder and its sub-folders (hidden ones left out), folders
    and names in natural order (2 before 10)."""
    found = []
    for root, dirs, names in sorted(os.walk(folder, followlinks=True), key=lambda walked: _natural_key(walked[0])):
        if any(part.startswith(".") for part in Path(root).relative_to(folder).parts):
            continue
        for name in sorted(names, key=_natural_key):
            if os.path.splitext(name)[1].lower() in PICTURE_EXTENSIONS and not name.startswith("."):
                found.append(Path(root) / name)
    return found


def list_masks(folder: Path) -> list[Path]:
    """A1111's shared.listfiles: the files (not hidden) directly in the mask folder, in natural order."""
    return [folder / name for name in sorted(os.listdir(folder), key=_natural_key)
            if not name.startswith(".") and (folder / name).is_file()]


def find_mask(picture: Path, masks: list[Path]) -> Path | None:
    """A1111's rule: a folder with one mask uses it for every picture; otherwise the mask with the picture's
    stem, whatever its extension (several: the first)."""
    if len(masks) == 1:
        return masks[0]
    return next((mask for mask in masks if mask.stem == picture.stem), None)


# 2. One picture ----------------------------------------------------------------------------------------------
def open_picture(path: Path, limits: Any = None) -> Image.Image:
    """The decoded picture, turned upright by its EXIF orientation (as A1111); OSError/RequestError if bad."""
    with Image.open(path) as image:
        if limits is not None:  # the declared size, before decoding (a small file can declare a huge picture)
            limits.check_image_size("image", image.size)
        image.load()
        return ImageOps.exif_transpose(image).copy()


def png_info_changes(base: Img2ImgRequest, infotext: str | None, props: tuple[str, ...]) -> dict[str, Any]:
    """A1111's "PNG info" option: the chosen fields of the infotext as request changes. The prompts are
    appended to the UI's (A1111 joins them with a space); the others replace the UI's values."""
    if not infotext:
        return {}
    parsed = {key: value for key, value in parse_infotext(infotext).items() if key in props}
    changes: dict[str, Any] = {}
    for key, name in (("Prompt", "prompt"), ("Negative prompt", "negative_prompt")):
        if parsed.get(key):
            changes[name] = " ".join(text for text in (getattr(base, name), parsed[key]) if text)
    for key, name, cast in (("Seed", "seed", int), ("CFG scale", "cfg_scale", float), ("Steps", "steps", int),
                            ("Sampler", "sampler_name", str)):
        if key in parsed:
            try:
                changes[name] = cast(parsed[key])
            except ValueError:
                raise RequestError(name, f"the infotext's {key} {parsed[key]!r} is not a valid value") from None
    return changes


def _picture_request(base: Img2ImgRequest, picture: Path, image: Image.Image, mask: Image.Image | None,
                     options: BatchOptions, info_dir: Path | None, notices: list[str]) -> Img2ImgRequest:
    changes: dict[str, Any] = {"init_image": image, "mask": mask}
    if options.scale_by is not None:
        changes["width"], changes["height"] = scaled_size(image.width, image.height, options.scale_by)
    if options.use_png_info:
        infotext = None
        source = info_dir / picture.name if info_dir is not None else None
        try:
            infotext = read_infotext(open_picture(source)) if source is not None else read_infotext(image)
        except (OSError, RequestError) as exc:  # A1111 goes on with the UI's values
            notices.append(f"{picture.name}: no PNG info from {source} ({exc}); the UI's values are used")
        changes.update(png_info_changes(base, infotext, tuple(options.png_info_props)))
        model_notice = "PNG info: \"Model hash\" is not applied by the Batch tab (the loaded checkpoint is used)"
        if "Model hash" in options.png_info_props and model_notice not in notices:
            notices.append(model_notice)
    request = base.replace(**changes)
    request.validate()
    return request


def output_name(picture: Path, index: int, many: bool) -> str:
    """A1111's samples_filename_pattern for a batch output: the stem, with -[generation_number] (1-based)
    when a picture gives several images; save_image puts the next free number before it."""
    return f"{picture.stem}-{index + 1}" if many else picture.stem


# 3. The folder -----------------------------------------------------------------------------------------------
def run_batch(run: Runner, base: Img2ImgRequest, options: BatchOptions, data_dir: Path,
              on_progress: ProgressCallback | None = None, control: JobControl | None = None,
              limits: Any = None) -> BatchResult:
    """Every picture of options.input_dir through `run` (engine.img2img, or a script over it) with `base`'s
    parameters. `run` is called inside the caller's job (see Engine.job), so Interrupt reaches all of it."""
    control = control or JobControl()
    # A1111's fix_seed: a random seed is drawn once, so every picture of the folder gets the same one.
    base = base.replace(seed=resolve_seed(base.seed), subseed=resolve_seed(base.subseed))
    input_dir = check_folder(data_dir, options.input_dir, "Input directory")
    if input_dir is None:
        raise RequestError("Input directory", "no input directory given")
    output_dir = check_folder(data_dir, options.output_dir, "Output directory", output=True)
    mask_dir = check_folder(data_dir, options.mask_dir, "Inpaint batch mask directory")
    info_dir = check_folder(data_dir, options.png_info_dir, "PNG info directory") if options.use_png_info else None
    pictures = list_pictures(input_dir)
    masks = list_masks(mask_dir) if mask_dir is not None else []
    result = BatchResult(pictures=len(pictures))
    if not pictures:
        result.notices.append(f"no pictures ({', '.join(PICTURE_EXTENSIONS)}) in {input_dir}")
    if mask_dir is not None and not masks:
        result.notices.append(f"no masks in {mask_dir}: the pictures are processed without one (as A1111)")
    started = time.monotonic()
    for number, picture in enumerate(pictures):
        if control.interrupted:
            result.interrupted = True
            break
        report = _picture_progress(on_progress, number, len(pictures), base.n_iter, picture, started)
        request = _prepare(base, picture, masks, options, info_dir, result.notices, limits)
        if request is None:
            continue
        try:
            out = run(request.replace(save_images=base.save_images and output_dir is None), report, control)
        except RequestError as exc:  # this picture's own problem (e.g. its size over a limit): go on
            result.notices.append(f"{picture.name}: {exc.field}: {exc.message}; skipped")
            continue
        _collect(result, out, picture, request, output_dir)
        result.processed += 1
        if getattr(out, "interrupted", False) or control.interrupted:
            result.interrupted = True
            break
    return result


def _prepare(base: Img2ImgRequest, picture: Path, masks: list[Path], options: BatchOptions,
             info_dir: Path | None, notices: list[str], limits: Any) -> Img2ImgRequest | None:
    """The picture's request, or None (with a notice naming the file) when it cannot be run."""
    try:
        image = open_picture(picture, limits)
    except (OSError, RequestError, Image.DecompressionBombError) as exc:
        notices.append(f"{picture.name}: not a readable picture ({_reason(exc)}); skipped")
        return None
    mask = None
    if masks:
        mask_path = find_mask(picture, masks)
        if mask_path is None:
            notices.append(f"{picture.name}: no mask named {picture.stem}.* in the mask directory; skipped")
            return None
        try:
            mask = open_picture(mask_path, limits)
        except (OSError, RequestError, Image.DecompressionBombError) as exc:
            notices.append(f"{picture.name}: its mask {mask_path.name} is not readable ({_reason(exc)}); skipped")
            return None
    try:
        return _picture_request(base, picture, image, mask, options, info_dir, notices)
    except RequestError as exc:
        notices.append(f"{picture.name}: {exc.field}: {exc.message}; skipped")
        return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _collect(result: BatchResult, out: Any, picture: Path, request: Img2ImgRequest, output_dir: Path | None) -> None:
    """The run's images into the batch result, and into the output folder when one is given."""
    first = getattr(out, "index_of_first_image", 0)  # a script's own grid is shown, not written as an output
    images = out.images[first:]
    result.skipped_batches += getattr(out, "skipped_batches", 0)
    for notice in getattr(out, "notices", []):
        if notice not in result.notices:
            result.notices.append(notice)
    saved = list(getattr(out, "paths", []))[first:] if output_dir is None else []
    many = len(images) > 1
    for index, image in enumerate(images):
        infotext = out.infotexts[first + index] if first + index < len(out.infotexts) else None
        if output_dir is not None:
            try:
                result.written.append(save_image(image.convert("RGB") if image.mode == "RGBA" else image, infotext,
                                                 output_dir, output_name(picture, index, many),
                                                 request.samples_format, quality=request.jpeg_quality))
            except OSError as exc:
                notice = save_failure_notice(exc, output_dir)
                if notice not in result.notices:
                    result.notices.append(notice)
        if len(result.images) < SHOW_RESULTS_LIMIT:
            result.images.append(image)
            result.infotexts.append(infotext or "")
            result.seeds.append(out.seeds[index] if index < len(out.seeds) else request.seed)
            result.subseeds.append(out.subseeds[index] if index < len(out.subseeds) else request.subseed)
            if index < len(saved):
                result.paths.append(saved[index])


def _picture_progress(on_progress: ProgressCallback | None, number: int, count: int, n_iter: int, picture: Path,
                      started: float) -> ProgressCallback:
    """The engine's per-run progress renumbered over the folder: picture i's batches are jobs i*n_iter + j."""
    text = f"{number + 1} out of {count}: {picture.name}"

    def forward(update: ProgressUpdate) -> None:
        if on_progress is not None:
            on_progress(dataclasses.replace(update, job=number * n_iter + update.job, job_count=count * n_iter,
                                            text=text, elapsed=time.monotonic() - started))
    return forward
