"""Textual-inversion embeddings (embeddings/, --embeddings-dir): read safely, used by writing the file name.

A1111's rules: an embedding is named by its file name (without suffix); writing that name in the prompt or
negative prompt puts the file's vectors there, one token slot per vector. Files: A1111's .pt
({"string_to_param": {"*": (n, dim)}, "step", ...}), A1111's .safetensors ({"emb_params": (n, dim)}),
diffusers' .bin/.pt ({"<token>": (dim,) or (n, dim)}), SDXL's ({"clip_l", "clip_g"}). They are read with
safetensors or torch.load(weights_only=True): a file that would run code is refused.

Loading is diffusers' `load_textual_inversion` (new token rows in the text encoder, tokens in the tokenizer).
The tokens are placeholders named after the file's hash ("emb1a2b3c4d5e6f", "..._1", ...), not the name
itself, so a name that is also a word ("style") or written in another case still works and never splits
other words. `expand_embedding_tokens(tokenizer, text)` writes each name as its placeholder tokens, matched
where A1111's token matching would find it (case-insensitive, at CLIP's word-piece boundaries).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.models.checkpoint_files import CheckpointError, HashCache, read_small_weights_file, walk_model_files

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")
MAX_EMBEDDING_BYTES = 64 << 20  # an embedding is kilobytes; anything this big is some other model file
SHORT_HASH_LENGTH = 12  # A1111's Embedding.shorthash
_TOKENS_ATTRIBUTE = "studio_embedding_tokens"  # where a tokenizer keeps its name -> placeholders map


class EmbeddingError(ValueError):
    """A file in the embeddings folder that is not a textual-inversion embedding (the message says why)."""


@dataclass
class EmbeddingFile:
    name: str
    path: Path
    vectors: torch.Tensor | None = None  # (n, dim), float32 on the CPU; None for SDXL files (see `sdxl`)
    sdxl: dict[str, torch.Tensor] = field(default_factory=dict)  # {"clip_l": ..., "clip_g": ...}
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    error: str | None = None

    @property
    def shape(self) -> int | None:
        """The vector width (A1111's `shape`): 768 for SD 1.x, 1024 for SD 2.x, 1280 (clip_g) for SDXL."""
        if self.vectors is not None:
            return int(self.vectors.shape[-1])
        if "clip_g" in self.sdxl:
            return int(self.sdxl["clip_g"].shape[-1])
        return None

    @property
    def count(self) -> int:
        """How many token slots it takes (A1111's `vectors`)."""
        if self.vectors is not None:
            return int(self.vectors.shape[0])
        return int(next(iter(self.sdxl.values())).shape[0]) if self.sdxl else 0


# 1. Reading files ---------------------------------------------------------------------------------------
def read_embedding(path: Path) -> EmbeddingFile:
    """The embedding in `path`; EmbeddingError when it is not one."""
    if path.stat().st_size > MAX_EMBEDDING_BYTES:
        raise EmbeddingError(f"{path.name}: {path.stat().st_size >> 20} MB is too large for an embedding")
    try:
        data: Any = read_small_weights_file(path)
    except CheckpointError as error:
        raise EmbeddingError(str(error)) from None
    if not isinstance(data, dict):
        raise EmbeddingError(f"{path.name}: holds a {type(data).__name__}, not an embedding")
    embedding = EmbeddingFile(path.stem, path, step=_int_or_none(data.get("step")),
                              sd_checkpoint=_str_or_none(data.get("sd_checkpoint")),
                              sd_checkpoint_name=_str_or_none(data.get("sd_checkpoint_name")))
    if isinstance(data.get("clip_l"), torch.Tensor) and isinstance(data.get("clip_g"), torch.Tensor):
        embedding.sdxl = {k: _as_matrix(data[k]) for k in ("clip_l", "clip_g")}
        return embedding
    embedding.vectors = _as_matrix(_vectors_of(path, data))
    return embedding


def _vectors_of(path: Path, data: dict) -> torch.Tensor:
    if "string_to_param" in data:  # A1111 .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise EmbeddingError(f"{path.name}: holds {len(params) if isinstance(params, dict) else 0} terms; "
                                 f"an embedding has one")
        vectors = next(iter(params.values()))
    elif isinstance(data.get("emb_params"), torch.Tensor):  # A1111 .safetensors
        vectors = data["emb_params"]
    else:
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1 or len(data) != 1:  # diffusers: {"<token>": tensor}
            raise EmbeddingError(f"{path.name}: neither an A1111 embedding nor a diffusers concept "
                                 f"(keys: {', '.join(map(str, list(data)[:4]))})")
        vectors = tensors[0]
    if not isinstance(vectors, torch.Tensor) or vectors.dim() not in (1, 2) or vectors.numel() == 0:
        raise EmbeddingError(f"{path.name}: its vectors are not a (count, width) tensor")
    return vectors


def _as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().to(torch.float32)
    return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def discover_embeddings(dirs: list[Path]) -> tuple[list[EmbeddingFile], list[EmbeddingFile]]:
    """(readable embeddings, files that are not) under `dirs`, recursively; the first of two same names wins."""
    good: dict[str, EmbeddingFile] = {}
    bad: list[EmbeddingFile] = []
    for path in walk_model_files(dirs, EMBEDDING_SUFFIXES):
        if path.stem in good:
            continue
        try:
            if path.stat().st_size == 0:
                continue
            good[path.stem] = read_embedding(path)
        except (EmbeddingError, OSError) as error:
            log.warning("Skipping embedding %s: %s", path, error)
            bad.append(EmbeddingFile(path.stem, path, error=str(error)))
    return sorted(good.values(), key=lambda e: (e.name.casefold(), e.name)), bad


# 2. Names in a prompt -> placeholder tokens ------------------------------------------------------------------
def _boundary_class(char: str) -> str:
    """CLIP's pre-tokenizer splits text into letter runs, single digits and runs of other symbols."""
    if char.isalpha():
        return "letter"
    if char.isdigit():
        return "digit"
    return "space" if char.isspace() else "symbol"


def name_pattern(names: list[str]) -> re.Pattern | None:
    """Matches any of `names` (longest first, ignoring case) where A1111's token matching finds it: not
    inside a longer run of letters (or of symbols) on either side. Digits stand alone in CLIP's tokens, so
    "easynegative" also matches in "easynegative2", as in A1111."""
    if not names:
        return None
    parts = []
    for name in sorted(set(names), key=len, reverse=True):
        before = {"letter": r"(?<![^\W\d_])", "symbol": r"(?<![^\w\s])(?<!_)"}.get(_boundary_class(name[0]), "")
        after = {"letter": r"(?![^\W\d_])", "symbol": r"(?![^\w\s])(?!_)"}.get(_boundary_class(name[-1]), "")
        parts.append(f"{before}{re.escape(name)}{after}")
    return re.compile("|".join(parts), re.IGNORECASE)


@dataclass
class EmbeddingTokens:
    """What one tokenizer knows: embedding name (case-folded) -> its placeholder tokens, space-separated."""

    replacements: dict[str, str] = field(default_factory=dict)
    pattern: re.Pattern | None = None

    def update(self, replacements: dict[str, str]) -> None:
        self.replacements = dict(replacements)
        self.pattern = name_pattern(list(self.replacements))


def expand_embedding_tokens(tokenizer: Any, text: str) -> str:
    """`text` with every embedding name loaded into this tokenizer written as its placeholder tokens (one per
    vector), so the tokenizer gives one id per vector. Text without embedding names comes back unchanged;
    expanding twice changes nothing more. The prompt encoder (and a token counter) call this on the text."""
    tokens: EmbeddingTokens | None = getattr(tokenizer, _TOKENS_ATTRIBUTE, None)
    if tokens is None or tokens.pattern is None or not text:
        return text
    return tokens.pattern.sub(lambda m: f" {tokens.replacements[m.group(0).casefold()]} ", text)


def embedding_token_lengths(tokenizer: Any) -> Any:
    """For the chunker (prompt_chunks.EmbeddingLength): f(ids, position) -> how many ids from `position` on are
    one embedding's vectors (0: none starts there), so they are kept in one chunk as A1111 does. None when no
    embedding is loaded into this tokenizer."""
    tokens: EmbeddingTokens | None = getattr(tokenizer, _TOKENS_ATTRIBUTE, None)
    if tokens is None or not tokens.replacements:
        return None
    first_ids = {}
    for run in tokens.replacements.values():
        names = run.split()
        first_ids[tokenizer.convert_tokens_to_ids(names[0])] = len(names)

    def length(ids: Any, position: int) -> int:
        return first_ids.get(ids[position], 0)

    return length


def embedding_token_count(tokenizer: Any, name: str) -> int:
    """How many token slots the embedding `name` takes in this tokenizer (0 if it is not loaded)."""
    tokens: EmbeddingTokens | None = getattr(tokenizer, _TOKENS_ATTRIBUTE, None)
    if tokens is None or name.casefold() not in tokens.replacements:
        return 0
    return len(tokens.replacements[name.casefold()].split())


# 3. The library --------------------------------------------------------------------------------------------
class EmbeddingLibrary:
    """The embeddings this server knows; loads the ones a prompt names into the model's text encoder."""

    def __init__(self, dirs: list[Path], hashes: HashCache):
        self.dirs = [Path(d) for d in dirs]
        self.hashes = hashes
        self._lock = threading.RLock()
        self._placeholders: dict[str, str] = {}  # file hash -> placeholder token, on the tokenizer below
        self._tokenizer: weakref.ref | None = None
        self.embeddings: list[EmbeddingFile] = []
        self.unreadable: list[EmbeddingFile] = []
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            self.embeddings, self.unreadable = discover_embeddings(self.dirs)

    def listing(self, width: int | None, sdxl: bool = False) -> tuple[list[EmbeddingFile], list[EmbeddingFile]]:
        """(usable with a model of this embedding width, skipped), as A1111's loaded / skipped. An SDXL model
        (sdxl=True, width = its second encoder's) takes SDXL files ({"clip_l", "clip_g"}) only, others the rest."""
        with self._lock:
            usable = [e for e in self.embeddings
                      if e.shape == width and (bool(e.sdxl) if sdxl else e.vectors is not None)]
            return usable, [e for e in self.embeddings if e not in usable]

    def short_hash(self, embedding: EmbeddingFile) -> str:
        """A1111's TI hash: the first 12 hex digits of the file's SHA-256 (cached with the checkpoints')."""
        return self.hashes.sha256(embedding.path)[:SHORT_HASH_LENGTH]

    def forget(self) -> None:
        with self._lock:
            self._placeholders.clear()
            self._tokenizer = None

    def apply(self, pipe: Any, texts: list[str]) -> list[EmbeddingFile]:
        """Load every embedding named in `texts` that fits this text encoder into it (once per model: cached
        by file hash), and teach the tokenizer the names; returns the embeddings named, in order of first use."""
        with self._lock:
            tokenizer = pipe.tokenizer
            if self._tokenizer is None or self._tokenizer() is not tokenizer:
                self._placeholders.clear()  # a new model: its tokenizer has none of ours yet
                self._tokenizer = weakref.ref(tokenizer)
            usable, _ = self.listing(model_width(pipe), sdxl=is_sdxl(pipe))
            pattern = name_pattern([e.name for e in usable])
            by_name = {e.name.casefold(): e for e in usable}
            used: list[EmbeddingFile] = []
            for text in texts:
                for match in (pattern.finditer(text) if pattern is not None and text else ()):
                    embedding = by_name[match.group(0).casefold()]
                    if embedding not in used:
                        used.append(embedding)
            hashes = {e.name: self.hashes.sha256(e.path) for e in used}
            for embedding in used:
                if hashes[embedding.name] not in self._placeholders:
                    self._load(pipe, embedding, hashes[embedding.name])
            # The tokenizer learns every name loaded into it so far (a token counter can use them too).
            loaded = {e.name: self.hashes.sha256(e.path) for e in usable}
            replacements = {e.name.casefold(): _token_run(self._placeholders[loaded[e.name]], e.count)
                            for e in usable if loaded[e.name] in self._placeholders}
            tokens = getattr(tokenizer, _TOKENS_ATTRIBUTE, None) or EmbeddingTokens()
            tokens.update(replacements)
            for each in (tokenizer, getattr(pipe, "tokenizer_2", None)):
                if each is not None:  # SDXL: both tokenizers know the same placeholders
                    setattr(each, _TOKENS_ATTRIBUTE, tokens)
            return used

    def _load(self, pipe: Any, embedding: EmbeddingFile, digest: str) -> None:
        placeholder = f"emb{digest[:12]}"
        if embedding.vectors is None:  # SDXL: clip_l into the first encoder, clip_g into the second
            for part, tokenizer, encoder in (("clip_l", pipe.tokenizer, pipe.text_encoder),
                                             ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2)):
                pipe.load_textual_inversion(embedding.sdxl[part].clone(), token=placeholder, tokenizer=tokenizer,
                                            text_encoder=encoder)
        else:
            pipe.load_textual_inversion(embedding.vectors.clone(), token=placeholder, tokenizer=pipe.tokenizer,
                                        text_encoder=pipe.text_encoder)
        self._placeholders[digest] = placeholder
        log.info("Loaded embedding %s (%d vectors)", embedding.path, embedding.count)


def is_sdxl(model: Any) -> bool:
    """Whether a pipeline or SDComponents has SDXL's two text encoders."""
    return getattr(model, "text_encoder_2", None) is not None


def model_width(model: Any) -> int:
    """The embedding width a model takes (a pipeline or SDComponents): 768 SD 1.x, 1024 SD 2.x, 1280 SDXL
    (its second encoder's; SDXL embedding files carry both encoders' vectors)."""
    encoder = getattr(model, "text_encoder_2", None) or model.text_encoder
    return int(encoder.get_input_embeddings().weight.shape[-1])


def _token_run(placeholder: str, count: int) -> str:
    """diffusers' names for a multi-vector embedding's tokens: token, token_1, token_2, ..."""
    return " ".join([placeholder] + [f"{placeholder}_{i}" for i in range(1, count)])
