"""Interrogate CLIP (img2txt), as A1111 does it: a BLIP caption, then for each category list (artists,
flavors, mediums, movements, ...) the line(s) CLIP ranks closest to the image; "caption, match, match, ...".

Models come only from local transformers-format folders (models/BLIP, models/CLIP), loaded lazily onto the
CPU on the first call and kept until unload() (the ModelManager, their owner, unloads them on a checkpoint
switch). The device policy moves each onto the device for its part of a call and, as A1111's
interrogate_keep_models_in_memory (default off) does, back to RAM afterwards unless asked to keep them.
Text embeddings of the category lines are computed once per loaded CLIP model and cached in memory. Never
imports a front end.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipelines.device_policy import DevicePolicy

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CATEGORIES_DIR = PROJECT_ROOT / "models" / "interrogate"
BLIP_REPO = "Salesforce/blip-image-captioning-base"  # -large works too
CLIP_REPO = "openai/clip-vit-large-patch14"  # A1111's ViT-L/14
TOPN_IN_NAME = re.compile(r"\.top(\d+)$")  # "flavors.top3.txt" -> the 3 best lines
ARTIST_CATEGORY = "artists"  # its lines are ranked and returned as "by {artist}"
TEXT_BATCH = 256

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # the Hub's / save_pretrained's (v5)


class InterrogatorUnavailable(RuntimeError):
    """The models (or category lists) are missing or unreadable; the message says what to put where."""


@dataclass(frozen=True)
class CaptionOptions:
    """BLIP generation settings; A1111's defaults (interrogate_clip_num_beams / min / max length)."""

    num_beams: int = 1
    min_length: int = 24  # tokens, the prompt included (as in A1111's BLIP)
    max_length: int = 48
    prompt: str = "a picture of"  # BLIP's captioning prompt; stripped from the result, as A1111 does

    def __post_init__(self):
        if not 1 <= self.num_beams <= 16:
            raise ValueError(f"num_beams must be between 1 and 16, got {self.num_beams}")
        if not 1 <= self.max_length <= 512:
            raise ValueError(f"max_length must be between 1 and 512, got {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length must be between 0 and max_length ({self.max_length}), "
                             f"got {self.min_length}")


@dataclass(frozen=True)
class Category:
    name: str  # the file name without ".topN" and ".txt"
    top_n: int
    items: tuple[str, ...]  # the texts as ranked and returned ("by " already added for artists)


@dataclass(frozen=True)
class Match:
    category: str
    text: str
    score: float  # A1111's rank: softmax over 100 * cosine within the category, 0..1


# 1. Category lists ------------------------------------------------------------------------------------
def load_categories(folder: Path, skip: tuple[str, ...] = (), dict_limit: int = 1500) -> list[Category]:
    """Every *.txt in `folder`, sorted by name: one line one candidate, blank lines ignored, the first
    `dict_limit` lines kept (A1111's interrogate_clip_dict_limit). `skip` names categories to leave out."""
    if not folder.is_dir():
        raise InterrogatorUnavailable(
            f"Interrogate CLIP needs its category lists (artists.txt, flavors.txt, mediums.txt, "
            f"movements.txt) in {_display(folder)}/, which does not exist; it ships with the app.")
    categories = []
    for path in sorted(folder.glob("*.txt")):
        match = TOPN_IN_NAME.search(path.stem)
        name = path.stem[: match.start()] if match else path.stem
        if name in skip or path.stem in skip:
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        items = list(dict.fromkeys(line for line in lines if line))[:dict_limit]
        if name == ARTIST_CATEGORY:
            items = [item if item.startswith("by ") else f"by {item}" for item in items]
        if items:
            categories.append(Category(name, int(match.group(1)) if match else 1, tuple(items)))
    return categories


# 2. Model folders ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelSpec:
    what: str  # "a BLIP captioning model"
    model_type: str  # config.json's model_type
    architecture: str
    tokenizer_files: tuple[tuple[str, ...], ...]  # any one group, complete, will do
    repo: str

    def expected(self, folder: Path, root: Path | None = None) -> str:
        tokenizer = " or ".join(" + ".join(group) for group in self.tokenizer_files)
        return (f"Interrogate CLIP needs {self.what} in {_display(folder, root)}/ in Hugging Face transformers "
                f"format (config.json, model.safetensors or pytorch_model.bin, preprocessor_config.json, "
                f"tokenizer files {tokenizer}: the files of {self.repo} from huggingface.co)")


BLIP_SPEC = _ModelSpec("a BLIP captioning model", "blip", "BlipForConditionalGeneration",
                       (("tokenizer.json",), ("vocab.txt",)), BLIP_REPO)
CLIP_SPEC = _ModelSpec("a CLIP model", "clip", "CLIPModel",
                       (("tokenizer.json",), ("vocab.json", "merges.txt")), CLIP_REPO)


def find_model_folder(folder: Path, spec: _ModelSpec, root: Path | None = None) -> Path:
    """The folder itself, or the first sub-folder (by name) that holds a complete model; else
    InterrogatorUnavailable saying what is missing (paths shown relative to `root`, the data dir). Reads
    config.json only, never the weights."""
    if not folder.is_dir():
        problem = f"{_display(folder, root)}/ does not exist"
        raise InterrogatorUnavailable(f"{spec.expected(folder, root)}. Problem: {problem}.")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file())
    candidates = [folder, *subfolders]
    problems = [_folder_problem(candidate, spec, root) for candidate in candidates]
    for candidate, problem in zip(candidates, problems):
        if problem is None:
            return candidate
    # a sub-folder that looked like a model says more than its (mostly empty) parent
    problem = problems[1] if len(problems) > 1 else problems[0]
    raise InterrogatorUnavailable(f"{spec.expected(folder, root)}. Problem: {problem}.")


def _folder_problem(folder: Path, spec: _ModelSpec, root: Path | None = None) -> str | None:
    names = {p.name for p in folder.iterdir() if p.is_file()}
    where = _display(folder, root) + "/"
    if not names:
        return f"{where} is empty"
    legacy = sorted(n for n in names if n.endswith((".pth", ".pt", ".ckpt")))
    if "config.json" not in names:
        hint = (f" ({', '.join(legacy)} is an original, non-transformers checkpoint, which cannot be used)"
                if legacy else "")
        return f"{where} has no config.json{hint}"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{where}config.json is unreadable: {error}"
    if config.get("model_type") != spec.model_type:
        return f"{where}config.json is a {config.get('model_type')!r} model, not {spec.model_type!r}"
    architectures = config.get("architectures") or [spec.architecture]
    if spec.architecture not in architectures:
        return f"{where} holds a {'/'.join(architectures)}, not a {spec.architecture}"
    missing = []
    if not names.intersection(WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not names.intersection(PROCESSOR_FILES):
        missing.append("preprocessor_config.json")
    if not any(set(group) <= names for group in spec.tokenizer_files):
        missing.append(" or ".join(" + ".join(group) for group in spec.tokenizer_files))
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    return None


def _display(path: Path, root: Path | None = None) -> str:
    """The path as users know it: relative to the data dir (`root`: "models/BLIP"), else to the project."""
    path = Path(path).resolve()
    for base in (root, PROJECT_ROOT):
        if base is not None and path.is_relative_to(Path(base).resolve()):
            return str(path.relative_to(Path(base).resolve()))
    return str(path)


# 3. The interrogator ----------------------------------------------------------------------------------------
class Interrogator:
    def __init__(self, blip_dir: Path, clip_dir: Path, categories_dir: Path = DEFAULT_CATEGORIES_DIR,
                 policy: DevicePolicy | None = None, keep_models_in_memory: bool = False,
                 caption_options: CaptionOptions = CaptionOptions(),
                 skip_categories: tuple[str, ...] = (), dict_limit: int = 1500, return_ranks: bool = False,
                 display_root: Path | None = None):
        if dict_limit < 1:
            raise ValueError(f"dict_limit must be at least 1, got {dict_limit}")
        self.blip_dir, self.clip_dir = Path(blip_dir), Path(clip_dir)
        self.display_root = display_root  # messages show paths from here: the data dir ("models/BLIP")
        self.categories_dir = Path(categories_dir)
        # no policy (tests, tools): the CPU in fp32
        self.policy = policy or DevicePolicy(torch.device("cpu"), torch.float32, torch.float32)
        self.keep_models_in_memory = keep_models_in_memory  # A1111's "Interrogate: keep models in VRAM"
        self.caption_options = caption_options
        self.skip_categories = tuple(skip_categories)
        self.dict_limit = dict_limit
        self.return_ranks = return_ranks  # A1111's interrogate_return_ranks: "(match:0.123)"
        self._lock = threading.RLock()
        self._blip: tuple[Any, Any] | None = None  # (model, processor)
        self._clip: tuple[Any, Any] | None = None
        # items tuple -> normalised text embeddings (CPU, float32); emptied with the CLIP model
        self._text_embeddings: dict[tuple[str, ...], torch.Tensor] = {}

    def available(self) -> tuple[bool, str]:
        """Whether interrogate() can run, judged from the files alone (no weights are read); when not, every
        problem at once (BLIP and CLIP both missing is one message, not two tries)."""
        checks = (lambda: find_model_folder(self.blip_dir, BLIP_SPEC, self.display_root),
                  lambda: find_model_folder(self.clip_dir, CLIP_SPEC, self.display_root),
                  lambda: load_categories(self.categories_dir, self.skip_categories, self.dict_limit))
        problems = []
        for check in checks:
            try:
                check()
            except InterrogatorUnavailable as error:
                problems.append(str(error))
        return (False, "\n".join(problems)) if problems else (True, "ready")

    def interrogate(self, image: Image.Image) -> str:
        """A1111's Interrogate CLIP: "caption, match, match, ..." (or "(match:score)" with return_ranks)."""
        with self._lock:
            caption = self.caption(image)
            matches = self.rank(image)
        terms = [f"({m.text}:{m.score:.3f})" if self.return_ranks else m.text for m in matches]
        return ", ".join(part for part in [caption, *terms] if part)

    def caption(self, image: Image.Image) -> str:
        """The BLIP caption alone, the captioning prompt stripped."""
        options = self.caption_options
        with self._lock:
            model, processor = self._load_blip()
            try:
                self.policy.place_for_use(model)
                device, dtype = _placement(model)
                kwargs = {"text": options.prompt} if options.prompt else {}
                inputs = processor(images=_rgb(image), return_tensors="pt", **kwargs)
                with torch.inference_mode():
                    ids = model.generate(
                        pixel_values=inputs["pixel_values"].to(device, dtype),
                        input_ids=inputs["input_ids"].to(device) if options.prompt else None,
                        num_beams=options.num_beams, min_length=options.min_length,
                        max_length=options.max_length, do_sample=False)
            finally:
                self._after_use(model)
        return strip_prompt(processor.decode(ids[0], skip_special_tokens=True), options.prompt)

    def rank(self, image: Image.Image) -> list[Match]:
        """The top-N lines of every category by cosine similarity between CLIP image and text embeddings."""
        with self._lock:
            categories = load_categories(self.categories_dir, self.skip_categories, self.dict_limit)
            if not categories:
                return []
            model, processor = self._load_clip()
            try:
                self.policy.place_for_use(model)
                image_embedding = self._image_embedding(model, processor, image)
                matches = []
                for category in categories:
                    texts = self._category_embeddings(model, processor, category.items)
                    cosine = (texts @ image_embedding).float()
                    probs = (100.0 * cosine).softmax(dim=-1)  # A1111's score; same order as the cosine
                    top = cosine.topk(min(category.top_n, len(category.items)))
                    matches += [Match(category.name, category.items[i], float(probs[i])) for i in top.indices]
            finally:
                self._after_use(model)
        return matches

    def unload(self) -> None:
        """Free both models and the text-embedding cache (the next call loads again)."""
        with self._lock:
            self._blip = self._clip = None
            self._text_embeddings.clear()
            gc.collect()
            self.policy.empty_cache()

    def loaded_models(self) -> list[Any]:
        """The models now in memory (BLIP, CLIP, either or none), for tests and memory reports."""
        return [pair[0] for pair in (self._blip, self._clip) if pair is not None]

    # Loading and placement ------------------------------------------------------------------------------
    def _load_blip(self) -> tuple[Any, Any]:
        if self._blip is None:
            from transformers import BlipForConditionalGeneration, BlipProcessor

            folder = find_model_folder(self.blip_dir, BLIP_SPEC, self.display_root)
            self._blip = self._load(BlipForConditionalGeneration, BlipProcessor, folder, BLIP_SPEC)
        return self._blip

    def _load_clip(self) -> tuple[Any, Any]:
        if self._clip is None:
            from transformers import CLIPModel, CLIPProcessor

            folder = find_model_folder(self.clip_dir, CLIP_SPEC, self.display_root)
            self._clip = self._load(CLIPModel, CLIPProcessor, folder, CLIP_SPEC)
            self._text_embeddings.clear()  # embeddings belong to the model that made them
        return self._clip

    def _load(self, model_class: Any, processor_class: Any, folder: Path,
              spec: _ModelSpec) -> tuple[Any, Any]:
        log.info("Interrogate: loading %s from %s", spec.what, folder)
        try:
            processor = processor_class.from_pretrained(str(folder), local_files_only=True)
            model = model_class.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            problem = f"loading {_display(folder, self.display_root)}/ failed: {error}"
            raise InterrogatorUnavailable(f"{spec.expected(folder, self.display_root)}. Problem: {problem}") \
                from error
        model.eval().requires_grad_(False)
        model.to(dtype=self.policy.dtype)  # on the CPU until a call places it
        return model, processor

    def _after_use(self, model: Any) -> None:
        # back to RAM after each use unless kept (never kept under --medvram/--lowvram: the policy decides)
        self.policy.release_after_use(model, keep=self.keep_models_in_memory)

    # CLIP embeddings --------------------------------------------------------------------------------------
    def _image_embedding(self, model: Any, processor: Any, image: Image.Image) -> torch.Tensor:
        pixels = processor(images=_rgb(image), return_tensors="pt")["pixel_values"]
        device, dtype = _placement(model)
        with torch.inference_mode():
            vision = model.vision_model(pixel_values=pixels.to(device, dtype))
            embedding = model.visual_projection(vision.pooler_output)[0].float()
        return (embedding / embedding.norm()).cpu()

    def _category_embeddings(self, model: Any, processor: Any, items: tuple[str, ...]) -> torch.Tensor:
        cached = self._text_embeddings.get(items)
        if cached is None:
            cached = self._text_embeddings[items] = self._embed_texts(model, processor.tokenizer, list(items))
        return cached

    def _embed_texts(self, model: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
        device, _ = _placement(model)
        chunks = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = tokenizer(texts[start:start + TEXT_BATCH], padding=True, truncation=True,
                               max_length=model.config.text_config.max_position_embeddings,
                               return_tensors="pt")
            with torch.inference_mode():
                # text_model + projection rather than get_text_features, whose return type changed in v5
                output = model.text_model(input_ids=tokens["input_ids"].to(device),
                                          attention_mask=tokens["attention_mask"].to(device))
                chunks.append(model.text_projection(output.pooler_output).float().cpu())
        embeddings = torch.cat(chunks)
        return embeddings / embeddings.norm(dim=-1, keepdim=True)


def strip_prompt(caption: str, prompt: str) -> str:
    """BLIP echoes its captioning prompt ("a picture of ..."); A1111 cuts it off."""
    caption = caption.strip()
    prompt = prompt.strip()
    if prompt and caption.lower().startswith(prompt.lower()):
        caption = caption[len(prompt):].strip()
    return caption


def _placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Where the model's weights are now (inputs go there): the policy may have moved it."""
    param = next(model.parameters())
    return param.device, param.dtype


def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"interrogate needs a PIL image, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")
