"""A checkpoint's family without loading it: from a .safetensors header's key names, or a diffusers folder's
configs. What /sdapi/v1/sd-models lists for files not loaded; .ckpt files (pickles: reading their names means
reading the whole file) say None until loaded, when the loaded model's own family is used instead.
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

from pipelines.models.checkpoint_files import DIFFUSERS_MARKER
from pipelines.models.families import ModelFamily

MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header
FAMILY_PREFIXES = (
    ("conditioner.embedders.", ModelFamily.SDXL),
    ("cond_stage_model.model.", ModelFamily.SD2),  # OpenCLIP ViT-H
    ("cond_stage_model.transformer.", ModelFamily.SD1),  # CLIP ViT-L
)


def family_from_keys(keys) -> ModelFamily | None:
    for prefix, family in FAMILY_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            return family
    return None


def _safetensors_keys(path: Path) -> list[str]:
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > MAX_HEADER_BYTES:
            return []
        header = json.loads(file.read(length))
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else []


def _folder_family(folder: Path) -> ModelFamily | None:
    index = json.loads((folder / DIFFUSERS_MARKER).read_text(encoding="utf-8"))
    if "XL" in str(index.get("_class_name", "")) or "text_encoder_2" in index:
        return ModelFamily.SDXL
    unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    # SD 2.x UNets alone use linear transformer projections (checkpoint_loader's folder rule)
    sd2 = unet.get("cross_attention_dim") == 1024 or bool(unet.get("use_linear_projection"))
    return ModelFamily.SD2 if sd2 else ModelFamily.SD1


@lru_cache(maxsize=256)
def _probe(path: Path, stamp: tuple[float, int]) -> ModelFamily | None:
    try:
        if path.is_dir():
            return _folder_family(path)
        if path.suffix.lower() == ".safetensors":
            return family_from_keys(_safetensors_keys(path))
    except (OSError, ValueError, struct.error):
        return None  # an unreadable file: the loader says what is wrong with it when it is chosen
    return None


def probe_family(path: Path | None) -> ModelFamily | None:
    """The family a checkpoint file or folder declares by its layout, or None when that cannot be told cheaply."""
    if path is None:
        return None
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    return _probe(path, (stat.st_mtime, stat.st_size))
