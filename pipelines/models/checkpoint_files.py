"""Finding checkpoint and VAE files on disk, and A1111's short hash of each (cached).

Discovery follows A1111's listing rules:
  * checkpoints: ``*.safetensors`` and ``*.ckpt`` found recursively, except ``*.vae.safetensors`` /
    ``*.vae.ckpt`` (A1111 keeps those out of the checkpoint list); a folder holding ``model_index.json``
    is a diffusers checkpoint and is not searched further (its component files are not checkpoints);
  * the name is the path relative to the searched folder without the suffix, "/"-separated
    ("sub/name"), which is what the dropdown and infotext's "Model" show;
  * the short hash is the first 10 hex digits of the file's SHA-256 ("Model hash" in infotext).

Hashing a 2-7 GB file takes seconds, so hashes are cached in a JSON file keyed by absolute path, size and
mtime: a file is hashed once, and again only when it changes.

Reading a file's tensors (read_state_dict) lives here too: .safetensors via safetensors; .ckpt/.pt only
via torch.load(weights_only=True), so a pickle that would run code is refused, never executed.
CheckpointError and read_state_dict are re-exported by pipelines.models.checkpoint_loader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from pipelines.models.components import CheckpointInfo

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
# A1111 lists these as VAEs (when they sit among checkpoints), never as checkpoints.
VAE_NAME_ENDINGS = tuple(".vae" + suffix for suffix in VAE_SUFFIXES)
DIFFUSERS_MARKER = "model_index.json"
SHORT_HASH_LENGTH = 10
_BLOCK_SIZE = 1 << 20  # 1 MiB: large enough to be fast, small enough to never hold a model in memory
_CACHE_VERSION = 1


class CheckpointError(Exception):
    """A model file cannot be loaded; the message names the file, the problem and what to do."""


def sha256_of_file(file: Path) -> str:
    """Full SHA-256 hex digest, streamed so multi-GB files never sit in memory."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


class HashCache:
    """SHA-256 of model files, persisted as JSON so each file is hashed once across restarts.

    An entry is valid only while the file's size and mtime_ns are unchanged. The JSON file is written
    atomically (temp file + os.replace) so a crash never leaves a half-written cache; a cache that
    cannot be parsed is ignored and rewritten on the next new hash.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # the model manager may hash in a worker while the UI refreshes
        self._entries: dict[str, dict] = self._read()

    def short_hash(self, file: Path) -> str:
        """A1111's short hash: the first 10 hex digits of the file's SHA-256 (computed once, cached)."""
        return self.sha256(file)[:SHORT_HASH_LENGTH]

    def sha256(self, file: Path) -> str:
        """The full digest (the HTTP API's sd-models reports it), from the cache when still valid."""
        key, stamp = self._key_and_stamp(file)
        cached = self._valid_entry(key, stamp)
        if cached is not None:
            return cached
        digest = sha256_of_file(Path(key))
        with self._lock:
            self._entries[key] = {**stamp, "sha256": digest}
            self._write()
        return digest

    def cached_short_hash(self, file: Path) -> str | None:
        """The short hash if it is already known for this exact file version; never reads the file."""
        key, stamp = self._key_and_stamp(file)
        cached = self._valid_entry(key, stamp)
        return cached[:SHORT_HASH_LENGTH] if cached else None

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _key_and_stamp(file: Path) -> tuple[str, dict]:
        absolute = Path(file).resolve()
        stat = absolute.stat()
        return str(absolute), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def _valid_entry(self, key: str, stamp: dict) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
        if not isinstance(entry, dict):
            return None
        same_version = entry.get("size") == stamp["size"] and entry.get("mtime_ns") == stamp["mtime_ns"]
        digest = entry.get("sha256")
        return digest if same_version and isinstance(digest, str) else None

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("Ignoring unreadable hash cache %s (%s); it will be rewritten.", self.path, error)
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            data = {}
        entries = data.get("entries")
        if not isinstance(entries, dict):
            log.warning("Ignoring hash cache %s with an unknown layout; it will be rewritten.", self.path)
            return {}
        return entries

    def _write(self) -> None:
        """Atomic replace; a failure to write only costs a re-hash next time, so it is not fatal."""
        payload = json.dumps({"version": _CACHE_VERSION, "entries": self._entries}, indent=1, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(payload)
                os.replace(temp_name, self.path)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
        except OSError as error:
            log.warning("Could not write hash cache %s: %s", self.path, error)


def _is_checkpoint_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(CHECKPOINT_SUFFIXES) and not name.endswith(VAE_NAME_ENDINGS)


def walk_model_files(dirs: Iterable[Path], suffixes: tuple[str, ...]) -> Iterable[Path]:
    """Files with one of `suffixes` (lower case) under each of `dirs`, recursively, in sorted order, links
    followed and each real folder visited once, hidden folders skipped (LoRA and embedding folders)."""
    for root in dirs:
        if Path(root).is_dir():
            for path, is_folder in _walk_model_paths(Path(root), diffusers_folders=False):
                if not is_folder and path.suffix.lower() in suffixes:
                    yield path


def _walk_model_paths(root: Path, diffusers_folders: bool = True) -> Iterable[tuple[Path, bool]]:
    """Yields (path, is_diffusers_folder); does not descend into diffusers folders or hidden folders.

    Symbolic links are followed (users link model folders from other disks), but each real directory is
    visited once: a link back up the tree would otherwise make the walk endless."""
    visited: set[tuple[int, int]] = set()
    for current, subdirs, files in os.walk(root, followlinks=True):
        current_path = Path(current)
        try:
            stat = current_path.stat()
        except OSError:  # vanished or unreadable meanwhile: nothing to list there
            subdirs.clear()
            continue
        if (stat.st_dev, stat.st_ino) in visited:
            subdirs.clear()
            continue
        visited.add((stat.st_dev, stat.st_ino))
        if diffusers_folders and DIFFUSERS_MARKER in files:
            subdirs.clear()
            yield current_path, True
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for file_name in sorted(files):
            yield current_path / file_name, False


def _relative_name(path: Path, root: Path, strip_suffix: bool) -> str:
    relative = path.relative_to(root)
    if strip_suffix:
        relative = relative.with_suffix("")
    return relative.as_posix()


def _checkpoint_candidates(dirs: list[Path]) -> list[tuple[str, Path, bool]]:
    """(name, path, is_diffusers_folder) for each checkpoint under `dirs`, first occurrence wins."""
    found: list[tuple[str, Path, bool]] = []
    seen: set[Path] = set()
    for root in (Path(d) for d in dirs):
        if not root.is_dir():
            continue
        if (root / DIFFUSERS_MARKER).is_file():
            entries = [(root.name, root, True)]  # the folder itself was passed: one diffusers model
        else:
            entries = [
                (_relative_name(path, root, strip_suffix=not is_folder), path, is_folder)
                for path, is_folder in _walk_model_paths(root)
                if is_folder or _is_checkpoint_file(path)
            ]
        for name, path, is_folder in entries:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((name, path, is_folder))
    return found


def _short_hash_or_none(hashes: HashCache, path: Path, compute: bool) -> str | None:
    try:
        return hashes.short_hash(path) if compute else hashes.cached_short_hash(path)
    except OSError as error:  # one unreadable file must not break the whole listing
        log.warning("Cannot hash %s: %s", path, error)
        return None


def discover_checkpoints(
    dirs: list[Path], hashes: HashCache, *, compute_hashes: bool = True
) -> list[CheckpointInfo]:
    """Every checkpoint file and diffusers folder under `dirs`, sorted by name (case-insensitive).

    With compute_hashes=False only already-cached hashes are used (no file is read), so a start-up
    listing of many multi-GB files stays instant; hash on load instead.
    Two files that would share a name ("a.ckpt" and "a.safetensors") keep their suffix in the name so
    every entry stays selectable. Paths are resolved, so they compare equal to a resolved --ckpt path
    even through symlinked model folders.
    """
    candidates = _checkpoint_candidates(dirs)
    name_counts = Counter(name for name, _, _ in candidates)
    infos = []
    for name, path, is_folder in candidates:
        if name_counts[name] > 1 and not is_folder:
            name += path.suffix
        # a diffusers folder has no single file to hash
        short = None if is_folder else _short_hash_or_none(hashes, path, compute_hashes)
        infos.append(CheckpointInfo(name=name, path=path.resolve(), short_hash=short))
    return sorted(infos, key=lambda info: (info.name.casefold(), info.name))


def discover_vaes(dirs: list[Path], *, checkpoint_dirs: Iterable[Path] = ()) -> list[Path]:
    """VAE files: every .safetensors/.pt/.ckpt under `dirs` (models/VAE), plus, like A1111, files named
    *.vae.safetensors / *.vae.pt / *.vae.ckpt under `checkpoint_dirs`. Resolved paths, sorted by file name."""
    found: dict[Path, Path] = {}
    for root, only_vae_named in [(Path(d), False) for d in dirs] + [(Path(d), True) for d in checkpoint_dirs]:
        if not root.is_dir():
            continue
        for path, is_folder in _walk_model_paths(root):
            name = path.name.lower()
            wanted = name.endswith(VAE_NAME_ENDINGS) if only_vae_named else name.endswith(VAE_SUFFIXES)
            if not is_folder and wanted:
                found.setdefault(path.resolve(), path)
    return sorted(found, key=lambda p: (p.name.casefold(), str(p)))


# -- reading a state dict safely ---------------------------------------------------------------


class _InertObject:
    """Stands in for harmless non-tensor objects found in real SD .ckpt files (PyTorch Lightning's
    ModelCheckpoint callback state, numpy dtypes): it runs no code and keeps no state."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _inert_function(*args: Any, **kwargs: Any) -> None:
    return None


# Only names seen in the official SD 1.x .ckpt files; anything else is still refused by weights_only.
_INERT_PICKLE_GLOBALS = [
    (_InertObject, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    (_InertObject, "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"),
    (_inert_function, "numpy.core.multiarray.scalar"),
    (_inert_function, "numpy._core.multiarray.scalar"),
    (_InertObject, "numpy.dtype"),
    *[(_InertObject, f"numpy.dtypes.{kind}DType") for kind in ("Int64", "Int32", "Float64", "Float32")],
]
# safe_globals() swaps a process-wide list: two loads in parallel threads must not interleave it.
_SAFE_GLOBALS_LOCK = threading.Lock()


def _sniff_format(path: Path) -> str:
    """By content first (renamed files exist in the wild), then by suffix."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's zip container (can be memory-mapped)
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"  # 8-byte header length, then the JSON header
    return "safetensors" if path.suffix.lower() == ".safetensors" else "pickle"


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return CheckpointError(
        f"{path}: cannot read this model file ({detail}). It is probably truncated or corrupt "
        "(an interrupted download?); download it again."
    )


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type, OSError or ValueError
        raise _corrupt(path, error) from None


def read_small_weights_file(path: Path) -> Any:
    """A small weights file (LoRA, embedding) as stored: safetensors, or a pickle read weights-only. Any failure
    is a CheckpointError naming the file, since safetensors raises its own types."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return _read_pickle(path, mmap=False)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types; say which file
        raise CheckpointError(f"{path}: cannot read it ({error})") from None


def _read_pickle(path: Path, mmap: bool) -> Any:
    try:
        with _SAFE_GLOBALS_LOCK, torch.serialization.safe_globals(_INERT_PICKLE_GLOBALS):
            # mmap (zip files only): tensors are paged in from disk, not copied into memory up front
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"GLOBAL ([\w.]+)", str(error))
        if culprit:
            raise CheckpointError(
                f"{path}: refused for safety: unpickling this file needs arbitrary code execution (it "
                f"calls {culprit.group(1)}). Only plain weights are read from .ckpt/.pt files. Get a "
                ".safetensors version of the model, or convert it with a tool you trust."
            ) from None
        raise CheckpointError(
            f"{path}: the safe weights-only reader cannot read this file: it is corrupt or truncated, or "
            "it needs arbitrary code execution to unpickle, which is refused for safety. Download it "
            "again, preferably as .safetensors."
        ) from None
    except Exception as error:  # zip errors, EOFError, KeyError on garbage, ...
        raise _corrupt(path, error) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors or .ckpt/.pt file, unwrapped from a "state_dict" key if present."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    kind = _sniff_format(path)
    raw = _read_safetensors(path) if kind == "safetensors" else _read_pickle(path, mmap=kind == "zip")
    while isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]  # Lightning checkpoints nest the weights, sometimes twice
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a state dict of weights.")
    tensors = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: contains no weights.")
    return tensors
