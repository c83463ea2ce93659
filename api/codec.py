"""Images <-> base64 text, the way A1111's API sends and receives them.

Incoming: raw base64 or a `data:image/...;base64,` URL; anything that does not decode to a readable image
raises RequestError naming the field (init_images[0], mask, image). URLs are not fetched (offline-first;
A1111 downloads them). Outgoing: raw base64 PNG carrying the infotext in the "parameters" text chunk.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, PngImagePlugin

from pipelines.fields import RequestError
from pipelines.io.outputs import PNG_INFO_KEY
from pipelines.limits import ImageBudget

_DATA_URL = re.compile(r"^data:[^,]*?;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_image(text: object, field: str, budget: ImageBudget | None = None) -> Image.Image:
    """Base64 text (or a data: URL) -> a fully loaded PIL image; RequestError(field, ...) otherwise.

    The declared size (read from the header, no pixels decoded yet) is admitted by `budget` (the request's
    pixel budget; None: one image within the default per-image limit) before anything is decoded."""
    budget = budget or ImageBudget()
    if not isinstance(text, str):
        raise RequestError(field, f"expected a base64 string, got {type(text).__name__}")
    data = _WHITESPACE.sub("", text)
    if data.lower().startswith(("http://", "https://")):
        raise RequestError(field, "image URLs are not fetched (the server works offline); send base64 data")
    data = _DATA_URL.sub("", data, count=1)
    if not data:
        raise RequestError(field, "is empty; expected a base64-encoded image")
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, "is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise RequestError(field, f"image too large: {exc}") from None
    except Exception:  # noqa: BLE001 - PIL raises assorted errors (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise RequestError(field, "is base64 but not a readable image (PNG, JPEG, WebP, ...)") from None
    budget.admit(field, image.size)  # RequestError naming the field and the limit: nothing decoded yet
    try:
        image.load()  # decode now: a truncated or corrupt file fails here, not halfway through a job
    except Image.DecompressionBombError as exc:
        raise RequestError(field, f"image too large: {exc}") from None
    except Exception:  # noqa: BLE001 - PIL raises assorted errors (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise RequestError(field, "is base64 but not a readable image (PNG, JPEG, WebP, ...)") from None
    return image


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """A PIL image -> raw base64 PNG (no data: prefix, as A1111 returns), infotext in "parameters"."""
    pnginfo = None
    if infotext:
        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_text(PNG_INFO_KEY, infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# Keys PIL puts in Image.info that are not user text; A1111's IGNORED_INFO_KEYS.
IGNORED_INFO_KEYS = {
    "jfif",
    "jfif_version",
    "jfif_unit",
    "jfif_density",
    "dpi",
    "exif",
    "loop",
    "background",
    "timestamp",
    "duration",
    "progressive",
    "progression",
    "icc_profile",
    "chromaticity",
    "photoshop",
    "transparency",
    "gamma",
    "aspect",
    "srgb",
}


def other_text_items(image: Image.Image) -> dict[str, object]:
    """The image's other metadata (PNG text chunks, ...) as JSON-safe values, without "parameters"."""
    items: dict[str, object] = {}
    for key, value in (image.info or {}).items():
        if not isinstance(key, str) or key == PNG_INFO_KEY or key in IGNORED_INFO_KEYS:
            continue
        if isinstance(value, (str, int, float, bool)):
            items[key] = value
        elif isinstance(value, bytes):
            items[key] = value.decode("utf-8", errors="replace")
        elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
            items[key] = list(value)
    return items
