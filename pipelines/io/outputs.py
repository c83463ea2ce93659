"""Saving outputs with their infotext, and reading it back (PNG Info tab, /sdapi/v1/png-info).

Files are named like A1111's: `<NNNNN>-<seed>.<ext>`, NNNNN one past the highest number already in the
directory. Two guarantees hold even for concurrent threads and processes:
- a file appears under its final name only once completely written: the image is encoded to a temporary
  file in the same directory, then hard-linked to its final name (os.link never replaces an existing file);
- no number is used twice, whatever the seeds: a saver first claims the number by exclusively creating a
  hidden `.NNNNN.claim` file, checks that no file carries the number yet, links, then drops the claim.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import piexif
import piexif.helper
from PIL import Image, PngImagePlugin

PNG_INFO_KEY = "parameters"  # A1111's PNG text chunk name
TEMP_PREFIX = ".tmp-"  # hidden; the leading dot also keeps these names out of the numbering
DEFAULT_QUALITY = 80  # A1111's default jpeg_quality, also used for WebP

_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_MAX_NAME_ATTEMPTS = 100_000
STALE_SECONDS = 60  # a leftover temp or claim file this old belongs to no save in progress

log = logging.getLogger(__name__)


def dated_output_dir(root: Path, kind: str = "img2img-images", today: datetime.date | None = None) -> Path:
    """root/kind/YYYY-MM-DD, created if missing (A1111's outputs layout)."""
    day = today or datetime.date.today()
    directory = Path(root) / kind / day.isoformat()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _leading_number(name: str, basename: str = "") -> int | None:
    """The file's number: its leading digits, or the digits after `<basename>-` (A1111's "grid-0003.png")."""
    if basename:
        if not name.startswith(f"{basename}-"):
            return None
        name = name[len(basename) + 1:]
    head = os.path.splitext(name)[0].split("-")[0]
    return int(head) if head.isdigit() else None


def next_sequence_number(directory: Path, basename: str = "") -> int:
    """One past the highest leading number of the file names in directory (0 when there is none)."""
    numbers = [n for n in (_leading_number(name, basename) for name in os.listdir(directory)) if n is not None]
    return max(numbers, default=-1) + 1


def _number_in_use(directory: Path, number: int, basename: str = "") -> bool:
    return any(_leading_number(name, basename) == number for name in os.listdir(directory))


def _exif_with_comment(infotext: str) -> bytes:
    # A1111 stores the infotext as an EXIF UserComment in UNICODE (UTF-16) encoding.
    comment = piexif.helper.UserComment.dump(infotext, encoding="unicode")
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})


def _encode(img: Image.Image, infotext: str | None, path: str, pil_format: str, quality: int,
            text_chunks: Mapping[str, str] | None = None) -> None:
    """Write img to path in pil_format with the infotext embedded the way A1111 does for that format.
    `text_chunks`: the PNG text chunks to write instead of {"parameters": infotext} (Extras keeps the source's
    "parameters" and adds "postprocessing" and "extras", as A1111)."""
    if pil_format == "PNG":
        pnginfo = None
        chunks = text_chunks if text_chunks is not None else ({PNG_INFO_KEY: infotext} if infotext else {})
        if chunks:
            pnginfo = PngImagePlugin.PngInfo()
            for key, text in chunks.items():
                pnginfo.add_text(key, text)  # tEXt, or iTXt when not latin-1
        img.save(path, format="PNG", pnginfo=pnginfo)
        return
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # JPEG has no alpha; WebP keeps the A1111 behaviour of flattening too
    extra = {"exif": _exif_with_comment(infotext)} if infotext else {}
    img.save(path, format=pil_format, quality=quality, **extra)


def _link_without_replacing(temp_path: str, final_path: Path) -> None:
    """Give the finished temp file its final name; raise FileExistsError rather than replace a file."""
    try:
        os.link(temp_path, final_path)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        # Filesystems without hard links: reserve the name exclusively, then move the file over it.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    os.close(os.open(final_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    os.replace(temp_path, final_path)


def _publish_under_number(temp_path: str, directory: Path, number: int, name: str,
                          basename: str = "") -> Path | None:
    """Link temp_path to directory/name if `number` is free; None if another saver has it."""
    claim = directory / f".{basename}{number:05}.claim"
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return None
    try:
        # Holding the claim, the number can only be taken by a file that already exists now.
        if _number_in_use(directory, number, basename):
            return None
        final_path = directory / name
        _link_without_replacing(temp_path, final_path)
        return final_path
    except FileExistsError:  # a saver that does not claim (another program) took the exact name
        return None
    finally:
        os.unlink(claim)


def save_image(
    img: Image.Image,
    infotext: str | None,
    directory: Path,
    seed: int | str | None,
    fmt: str = "png",
    *,
    quality: int = DEFAULT_QUALITY,
    text_chunks: Mapping[str, str] | None = None,
    preferred_name: str | None = None,
    basename: str = "",
) -> Path:
    """Save img as directory/<NNNNN>-<seed>.<fmt> (png, jpg/jpeg, webp) with its infotext; return the path.

    seed None: <NNNNN>.<fmt> (A1111's short names, e.g. Extras). preferred_name: <name>.<fmt> when that name
    is free (A1111's "use original name" for batches; an existing file is never replaced), else
    <NNNNN>-<name>.<fmt>. A text `seed` is written in its place (img2img Batch: the source's name).
    basename: files numbered apart from the others in 4 digits, <basename>-<NNNN>[-<seed>].<fmt> (A1111's grids:
    grid-0000.png). A failed encode raises and leaves nothing behind.
    """
    extension = fmt.lower().lstrip(".")
    if extension not in _FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; expected one of {sorted(_FORMATS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    # 1. Encode completely under a temporary name in the same directory (same filesystem for the link).
    fd, temp_path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f".{extension}", dir=directory)
    os.close(fd)
    try:
        _encode(img, infotext, temp_path, _FORMATS[extension], quality, text_chunks)
        if preferred_name:
            try:
                final_path = directory / f"{preferred_name}.{extension}"
                _link_without_replacing(temp_path, final_path)
                return final_path
            except FileExistsError:
                pass
        # 2. Publish under the first free number; one taken meanwhile by someone else just moves us on.
        number = next_sequence_number(directory, basename)
        tag = preferred_name or seed
        for _ in range(_MAX_NAME_ATTEMPTS):
            head = f"{basename}-{number:04}" if basename else f"{number:05}"
            name = f"{head}.{extension}" if tag is None else f"{head}-{tag}.{extension}"
            final_path = _publish_under_number(temp_path, directory, number, name, basename)
            if final_path is not None:
                return final_path
            number = max(number + 1, next_sequence_number(directory, basename))
        raise RuntimeError(f"no free file name in {directory} after {_MAX_NAME_ATTEMPTS} attempts")
    finally:
        # 3. The temp name goes in every case (after a link the final name keeps the data).
        if os.path.exists(temp_path):
            os.unlink(temp_path)


def save_failure_notice(exc: OSError, folder: Path) -> str:
    """What the user is told when a finished image could not be saved (it is still returned)."""
    reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return f"saving failed ({reason}; in {folder}): the images are returned but were not saved"


def sweep_leftovers(root: Path, older_than: float = STALE_SECONDS) -> int:
    """Remove the temp (`.tmp-*`) and claim (`.NNNNN.claim`) files a killed save left anywhere under root
    (at start-up); files younger than `older_than` seconds may be another process's save and stay.
    Returns how many went."""
    removed, cutoff = 0, time.time() - older_than
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if not (name.startswith(TEMP_PREFIX) or (name.startswith(".") and name.endswith(".claim"))):
                continue
            path = os.path.join(folder, name)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except OSError:  # gone meanwhile, or not ours to remove
                continue
    if removed:
        log.info("removed %d leftover temporary file(s) of interrupted saves under %s", removed, root)
    return removed


def _exif_user_comment(exif_bytes: bytes) -> str | None:
    try:
        exif = piexif.load(exif_bytes)
    except Exception:  # piexif raises assorted errors (and may try to open bytes as a path) on bad data
        return None
    raw = exif.get("Exif", {}).get(piexif.ExifIFD.UserComment)
    if not raw:
        return None
    try:
        return piexif.helper.UserComment.load(raw)
    except ValueError:  # no recognised encoding prefix: A1111 falls back to raw UTF-8
        return raw.decode("utf8", errors="ignore")


def read_infotext(img: Image.Image) -> str | None:
    """The infotext stored in an image: PNG "parameters" text, else EXIF UserComment (JPEG/WebP); or None."""
    try:
        img.load()  # PNG text chunks after the image data only reach img.info once pixels are read
    except Exception:
        pass
    text = img.info.get(PNG_INFO_KEY)
    if text:
        return str(text)
    exif_bytes = img.info.get("exif")
    if exif_bytes:
        return _exif_user_comment(exif_bytes) or None
    return None
