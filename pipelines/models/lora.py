"""LoRA files (models/Lora, --lora-dir): discovery, A1111's hashes, and applying them to the loaded model.

Loading is diffusers' own: `load_lora_weights` (kohya key conversion, peft adapters), `set_adapters` for the
per-tag weights (text encoder and UNet apart), `delete_adapters` / `unload_lora_weights` to take them off.
The glue here:
  * which file a `<lora:name>` means (file name or the alias its metadata gives, as A1111);
  * a check that the file is a LoRA for this model (kohya layer names and shapes against the model's
    modules) before anything is changed, so a wrong file is an error naming it, not a half-patched model;
  * a cache of loaded adapters by file hash: a run loads what its prompt names and not yet loaded, and
    takes off what no longer is named; a checkpoint switch drops them all (the weights they sat in go).
The base weights are never changed (peft adds layers beside them), so taking every LoRA off restores the
model exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.models.checkpoint_files import (
    CheckpointError,
    read_small_weights_file,
    sha256_of_file,
    walk_model_files,
)

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")  # what A1111's Lora page lists
SHORT_HASH_LENGTH = 12  # A1111's NetworkOnDisk.shorthash
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_KOHYA_PARTS = ("lora_down.weight", "lora_up.weight", "alpha")
_BLOCK = 1 << 20


class LoraError(ValueError):
    """A LoRA file that cannot be applied to the loaded model; the message names the file and why."""


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file name without suffix: what <lora:name> names
    path: Path
    alias: str  # the metadata's ss_output_name, else the name (A1111 accepts either in the tag)
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def sd_version(self) -> str:
        """A1111's guess from the training metadata: SD1, SD2, SDXL or Unknown."""
        meta = self.metadata
        if str(meta.get("ss_base_model_version", "")).startswith("sdxl_") or \
                meta.get("modelspec.architecture") == "stable-diffusion-xl-v1-base/lora":
            return "SDXL"
        if str(meta.get("ss_v2", "")) == "True":
            return "SD2"
        if meta.get("modelspec.architecture") == "stable-diffusion-v1/lora" or meta:
            return "SD1"
        return "Unknown"


@dataclass
class ActiveLora:
    """A LoRA in use by a run: the file, its weights, its A1111 short hash, the name the prompt used."""

    file: LoraFile
    te_weight: float
    unet_weight: float
    short_hash: str
    mentioned_name: str


def discover_loras(dirs: list[Path]) -> list[LoraFile]:
    """Every LoRA file under `dirs` (recursively), sorted by name; the first of two same-named files wins."""
    found: dict[str, LoraFile] = {}
    for path in walk_model_files(dirs, LORA_SUFFIXES):
        if path.stem not in found:
            metadata = read_metadata(path)
            found[path.stem] = LoraFile(path.stem, path, metadata.get("ss_output_name") or path.stem, metadata)
    return sorted(found.values(), key=lambda f: (f.name.casefold(), f.name))


def read_metadata(path: Path) -> dict[str, str]:
    """A .safetensors file's "__metadata__" header (training details); {} for other files or on error."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100 * _BLOCK:
                return {}
            header = json.loads(handle.read(size))
        metadata = header.get("__metadata__") or {}
        return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError) as error:
        log.warning("Cannot read the metadata of %s: %s", path, error)
        return {}


def addnet_hash(path: Path) -> str:
    """kohya's hash of a .safetensors file (A1111's for LoRA): SHA-256 of the tensor data after the header,
    so editing the metadata keeps it. Other files: SHA-256 of the whole file."""
    if path.suffix.lower() != ".safetensors":
        return sha256_of_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(8 + int.from_bytes(handle.read(8), "little"))
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lora_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, read safely (safetensors, or torch.load with weights_only)."""
    try:
        raw: Any = read_small_weights_file(path)
    except CheckpointError as error:
        raise LoraError(str(error)) from None
    if not isinstance(raw, dict) or not raw:
        raise LoraError(f"{path}: holds no weights")
    return {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}


# 1. Is this file a LoRA for this model? ------------------------------------------------------------------
def _kohya_module_names(unet: Any, text_encoder: Any) -> dict[str, Any]:
    """kohya's layer names ("lora_unet_down_blocks_0_..._to_q", "lora_te_text_model_encoder_...") -> module."""
    names = {"lora_unet_" + n.replace(".", "_"): m for n, m in unet.named_modules() if n}
    for n, m in text_encoder.named_modules():
        if not n:
            continue
        flat = n.replace(".", "_")
        names["lora_te_" + flat] = m
        if not flat.startswith("text_model_"):  # transformers 5 dropped CLIPTextModel's text_model wrapper
            names["lora_te_text_model_" + flat] = m
    return names


def check_kohya_lora(path: Path, state_dict: dict[str, torch.Tensor], unet: Any,
                     text_encoder: Any) -> tuple[dict[str, torch.Tensor], list[str]]:
    """For a kohya/A1111-format file: the tensors of the layers this model has, and notices. LoraError when
    the file is for another model family (no layer fits, or a layer's shape differs) or holds a LyCORIS type
    diffusers cannot load (LoHa, LoKr, ...)."""
    if any(k.startswith(("lora_te1_", "lora_te2_")) for k in state_dict):
        raise LoraError(f"{path.name}: a LoRA for SDXL (two text encoders), not for the loaded SD 1.x model")
    other = sorted({k.split(".", 1)[-1] for k in state_dict if not k.endswith(_KOHYA_PARTS)})
    if other:
        raise LoraError(f"{path.name}: holds {', '.join(other[:4])} weights, a LyCORIS type (LoHa, LoKr, ...) "
                        f"that cannot be loaded; plain LoRA and LoCon files work")
    modules = _kohya_module_names(unet, text_encoder)
    layers = sorted({k.split(".", 1)[0] for k in state_dict})
    matched = [layer for layer in layers if layer in modules]
    if not matched:
        raise LoraError(f"{path.name}: none of its {len(layers)} layers is in the loaded model (e.g. "
                        f"{layers[0]}): it is a LoRA for another model family")
    for layer in matched:
        down = state_dict.get(f"{layer}.lora_down.weight")
        up = state_dict.get(f"{layer}.lora_up.weight")
        module = modules[layer]
        weight = getattr(module, "weight", None)
        if down is None or up is None or weight is None:
            raise LoraError(f"{path.name}: layer {layer} is incomplete or sits on a module without weights")
        if down.shape[1] != weight.shape[1] or up.shape[0] != weight.shape[0]:
            raise LoraError(f"{path.name}: layer {layer} has shape {tuple(up.shape[:1]) + tuple(down.shape[1:2])}"
                            f" but the model's is {tuple(weight.shape[:2])}: a LoRA for another model family "
                            f"(SD 2.x?)")
    notices = []
    if len(matched) < len(layers):
        missing = [layer for layer in layers if layer not in modules]
        notices.append(f"LoRA {path.name}: {len(missing)} of {len(layers)} layers are not in the loaded model "
                       f"and were left out (e.g. {missing[0]})")
        keep = set(matched)
        state_dict = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] in keep}
    return state_dict, notices


def check_sdxl_kohya_lora(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """On an SDXL model: a kohya file with the single text encoder's lora_te_ layers is for SD 1.x / 2.x."""
    if any(k.startswith("lora_te_") for k in state_dict) and \
            not any(k.startswith(("lora_te1_", "lora_te2_")) for k in state_dict):
        raise LoraError(f"{path.name}: a LoRA for SD 1.x / 2.x (one text encoder), not for the loaded SDXL model")


def _is_kohya(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(k.startswith(_KOHYA_PREFIXES) for k in state_dict)


# 2. The library: files on disk, adapters on the model ------------------------------------------------------
class LoraLibrary:
    """The LoRA files this server knows and the adapters applied to the loaded model (owned by the
    ModelManager, like every other set of weights)."""

    def __init__(self, dirs: list[Path]):
        self.dirs = [Path(d) for d in dirs]
        self._lock = threading.RLock()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._adapters: dict[str, str] = {}  # file hash -> adapter name, on the model `_model` refers to
        self._model: weakref.ref | None = None  # the UNet the adapters sit in
        self.files: list[LoraFile] = []
        self.refresh()

    def refresh(self) -> list[LoraFile]:
        with self._lock:
            self.files = discover_loras(self.dirs)
            return self.files

    def find(self, name: str) -> LoraFile | None:
        """By file name, then alias; then the same ignoring case."""
        for matches in (lambda f: name in (f.name, f.alias),
                        lambda f: name.casefold() in (f.name.casefold(), f.alias.casefold())):
            found = next((f for f in self.files if matches(f)), None)
            if found is not None:
                return found
        return None

    def full_hash(self, lora: LoraFile) -> str:
        """The hash A1111 records: the metadata's sshs_model_hash, else kohya's hash of the file (cached while
        the file's size and mtime stay the same)."""
        if lora.metadata.get("sshs_model_hash"):
            return lora.metadata["sshs_model_hash"]
        stat = lora.path.stat()
        key = (str(lora.path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._hashes:
                self._hashes[key] = addnet_hash(lora.path)
            return self._hashes[key]

    def short_hash(self, lora: LoraFile) -> str:
        return self.full_hash(lora)[:SHORT_HASH_LENGTH]

    def forget(self) -> None:
        """The model the adapters sat in is gone (checkpoint switch, unload)."""
        with self._lock:
            self._adapters.clear()
            self._model = None

    def loaded_adapters(self) -> dict[str, str]:
        """file hash -> adapter name, of the adapters on the loaded model."""
        with self._lock:
            return dict(self._adapters)

    def apply(self, pipe: Any, wanted: list[ActiveLora]) -> list[str]:
        """Make exactly `wanted` active on the pipeline's model, at their weights; returns notices.

        Adapters already loaded (same file hash) are reused; those no prompt names now are taken off; with
        none wanted every LoRA layer is removed, so the model is its original self. Raises LoraError naming
        the file when a file does not fit the model."""
        with self._lock:
            if self._model is None or self._model() is not pipe.unet:
                self._adapters.clear()  # a new model: nothing of ours is on it
                self._model = weakref.ref(pipe.unet)
            weights: dict[str, list[float]] = {}
            files: dict[str, LoraFile] = {}
            for item in wanted:  # the same file twice: its weights add up (A1111 applies it twice)
                digest = self.full_hash(item.file)
                files[digest] = item.file
                te, unet = weights.get(digest, [0.0, 0.0])
                weights[digest] = [te + item.te_weight, unet + item.unet_weight]
            self._take_off(pipe, [h for h in self._adapters if h not in weights])
            notices: list[str] = []
            for digest, lora in files.items():
                if digest not in self._adapters:
                    notices += self._load(pipe, lora, digest)
            if weights:
                self._set_weights(pipe, weights)
            return notices

    def _take_off(self, pipe: Any, hashes: list[str]) -> None:
        if not hashes:
            return
        if len(hashes) == len(self._adapters):
            pipe.unload_lora_weights()  # nothing stays: remove the peft layers themselves
        else:
            pipe.delete_adapters([self._adapters[h] for h in hashes])
        for digest in hashes:
            del self._adapters[digest]

    def _load(self, pipe: Any, lora: LoraFile, digest: str) -> list[str]:
        state_dict = read_lora_state_dict(lora.path)
        notices: list[str] = []
        if _is_kohya(state_dict) and getattr(pipe, "text_encoder_2", None) is not None:
            check_sdxl_kohya_lora(lora.path, state_dict)  # diffusers maps SDXL's sgm layer names itself
        elif _is_kohya(state_dict):
            state_dict, notices = check_kohya_lora(lora.path, state_dict, pipe.unet, pipe.text_encoder)
        elif not any("lora" in k for k in state_dict):
            raise LoraError(f"{lora.path.name}: not a LoRA (none of its {len(state_dict)} tensors is a LoRA "
                            f"layer; e.g. {next(iter(state_dict))})")
        adapter = f"lora_{digest[:16]}"
        try:
            pipe.load_lora_weights(state_dict, adapter_name=adapter)
        except Exception as error:  # noqa: BLE001 - diffusers/peft raise many types; name the file
            if adapter in _all_adapters(pipe):
                pipe.delete_adapters([adapter])
            raise LoraError(f"{lora.path.name}: cannot be applied to the loaded model: {error}") from error
        self._adapters[digest] = adapter
        log.info("Loaded LoRA %s as %s", lora.path, adapter)
        return notices

    def _set_weights(self, pipe: Any, weights: dict[str, list[float]]) -> None:
        parts = pipe.get_list_adapters()  # {"unet": [...], "text_encoder": [...]}
        names, per_adapter = [], []
        for digest, (te, unet) in sorted(weights.items()):  # a fixed order: the sum is the same whatever
            # order the prompt names them in (floating-point addition is not associative)
            adapter = self._adapters[digest]
            names.append(adapter)
            per_adapter.append({part: (unet if part == "unet" else te)  # SDXL: text_encoder_2 too
                                for part, adapters in parts.items() if adapter in adapters})
        pipe.set_adapters(names, adapter_weights=per_adapter)


def _all_adapters(pipe: Any) -> set[str]:
    return {a for adapters in pipe.get_list_adapters().values() for a in adapters}
