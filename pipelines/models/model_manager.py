"""The one owner of loaded models: discovers checkpoints and VAEs, loads offline, swaps, frees."""

from __future__ import annotations

import copy
import gc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.device_policy import DevicePolicy
from pipelines.launch_flags import Settings
from pipelines.models.checkpoint_files import HashCache, discover_checkpoints, discover_vaes
from pipelines.models.checkpoint_loader import CheckpointError, load_checkpoint, load_vae
from pipelines.models.components import DEMO_MODEL_NAME, CheckpointInfo, SDComponents
from pipelines.models.demo_model import build_demo_components
from pipelines.models.sd_pipelines import build_img2img_pipeline, build_inpaint_pipeline

PIPELINE_BUILDERS = {"img2img": build_img2img_pipeline, "inpaint": build_inpaint_pipeline}

log = logging.getLogger(__name__)

VAE_AUTOMATIC, VAE_NONE = "Automatic", "None"
DEMO_INFO = CheckpointInfo(name=DEMO_MODEL_NAME, path=None, short_hash=None)
DEMO_NOTICE = (
    "Running the embedded demo model: tiny and untrained, so images are noise-like. Put a Stable Diffusion "
    "1.x checkpoint (.safetensors or .ckpt) in models/Stable-diffusion/ and press refresh to use a real one."
)


class ModelNotFound(LookupError):
    """A checkpoint or VAE name that is not in the lists; the message lists the known names."""


@dataclass
class LoadedModel:
    info: CheckpointInfo
    components: SDComponents
    own_vae: Any  # the VAE baked into the checkpoint, kept for switching back
    vae_name: str | None = None  # None = the checkpoint's own VAE
    vae_hash: str | None = None
    _pipelines: dict[str, Any] = field(default_factory=dict)


class ModelManager:
    def __init__(self, settings: Settings, policy: DevicePolicy):
        self.settings = settings
        self.policy = policy
        self.hashes = HashCache(settings.cache_dir / "hashes.json")
        self._lock = threading.RLock()
        self._current: LoadedModel | None = None
        self._vae_choice = VAE_AUTOMATIC
        self.checkpoints: list[CheckpointInfo] = []
        self.vae_files: list[Path] = []
        self.refresh()

    # 1. Discovery -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-scan the model folders (the dropdowns' refresh buttons and the refresh API call this)."""
        found = discover_checkpoints(self.settings.checkpoint_dirs, self.hashes)
        extra = self.settings.ckpt
        if extra is not None and extra.exists() and all(c.path != extra.resolve() for c in found):
            found.append(CheckpointInfo(extra.stem, extra.resolve(), self._hash_of(extra)))
        self.checkpoints = found
        self.vae_files = discover_vaes(self.settings.vae_dirs, checkpoint_dirs=self.settings.checkpoint_dirs)

    def checkpoint_titles(self) -> list[str]:
        return [c.title for c in self.checkpoints] or [DEMO_INFO.title]

    def vae_choices(self) -> list[str]:
        return [VAE_AUTOMATIC, VAE_NONE] + [p.name for p in self.vae_files]

    def find_checkpoint(self, name: str) -> CheckpointInfo:
        """By title ("name [hash]"), name, file name or short hash, like A1111's sd_model_checkpoint."""
        if name in (DEMO_INFO.title, DEMO_INFO.name) and not self.checkpoints:
            return DEMO_INFO
        for c in self.checkpoints:
            file_title = f"{c.path.name} [{c.short_hash}]" if c.path is not None else None  # A1111's form
            if name in (c.title, c.name, c.short_hash, file_title) or (c.path is not None and name == c.path.name):
                return c
        raise ModelNotFound(f"checkpoint {name!r} not found; known: {', '.join(self.checkpoint_titles())}")

    # 2. Loading and switching -----------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel:
        with self._lock:
            if self._current is None:
                self.load(None)
            assert self._current is not None
            return self._current

    @property
    def is_demo(self) -> bool:
        return self.current.info.is_demo

    def load(self, name: str | None) -> CheckpointInfo:
        """Load a checkpoint by name (None: --ckpt, else the first one found, else the demo model)."""
        with self._lock:
            info = self._startup_choice() if name is None else self.find_checkpoint(name)
            if self._current is not None and self._current.info == info:
                return info
            self.unload()  # free the old weights before reading the new ones: peak memory = one model
            components = (build_demo_components() if info.is_demo
                          else load_checkpoint(info.path, self.policy.dtype, vae_dtype=self.policy.vae_dtype))
            self._current = LoadedModel(info, components, own_vae=components.vae)
            self._apply_vae_choice()
            log.info("Loaded %s (%s)", info.title, self.policy.describe())
            return info

    def unload(self) -> None:
        with self._lock:
            self._current = None
            gc.collect()
            self.policy.empty_cache()

    def _startup_choice(self) -> CheckpointInfo:
        if self.settings.ckpt is not None:
            path = self.settings.ckpt.resolve()
            for c in self.checkpoints:
                if c.path == path:
                    return c
            raise ModelNotFound(f"--ckpt {self.settings.ckpt}: file not found")
        return self.checkpoints[0] if self.checkpoints else DEMO_INFO

    def _hash_of(self, path: Path) -> str | None:
        return self.hashes.short_hash(path) if path.is_file() else None

    # 3. VAE -------------------------------------------------------------------------------------------
    @property
    def vae_choice(self) -> str:
        return self._vae_choice

    def set_vae(self, choice: str) -> None:
        with self._lock:
            if choice not in self.vae_choices():
                raise ModelNotFound(f"VAE {choice!r} not found; known: {', '.join(self.vae_choices())}")
            self._vae_choice = choice
            if self._current is not None:
                self._apply_vae_choice()

    def _apply_vae_choice(self) -> None:
        model = self._current
        assert model is not None
        path = self._vae_path_for(model.info)
        if path is None:
            vae, model.vae_name, model.vae_hash = model.own_vae, None, None
        else:
            vae = load_vae(path, self.policy.vae_dtype)
            model.vae_name, model.vae_hash = path.name, self._hash_of(path)
        model.components = copy.copy(model.components)
        model.components.vae = vae
        self.policy.place_components(model.components)
        model._pipelines.clear()

    def _vae_path_for(self, info: CheckpointInfo) -> Path | None:
        """None -> the checkpoint's own VAE. Automatic: --vae-path, else a VAE file named after the model."""
        if self._vae_choice == VAE_NONE:
            return None
        if self._vae_choice != VAE_AUTOMATIC:
            return next(p for p in self.vae_files if p.name == self._vae_choice)
        if self.settings.vae_path is not None:
            return self.settings.vae_path
        if info.path is not None:
            for candidate in self.vae_files:
                if candidate.name.split(".")[0] == info.path.name.split(".")[0]:
                    return candidate
        return None

    # 4. Pipelines over the shared weights ---------------------------------------------------------------
    def pipeline(self, kind: str = "img2img") -> Any:
        """The diffusers pipeline for `kind`, built once per model over the same components (no copies)."""
        with self._lock:
            model = self.current
            if kind not in model._pipelines:
                pipe = PIPELINE_BUILDERS[kind](model.components)
                self.policy.apply_to_pipeline(pipe)
                model._pipelines[kind] = pipe
            return model._pipelines[kind]

    def status_line(self) -> str:
        model = self.current
        if model.info.is_demo:
            return DEMO_NOTICE
        return f"Model: {model.info.title}" + (f", VAE: {model.vae_name}" if model.vae_name else "")


__all__ = ["ModelManager", "ModelNotFound", "CheckpointError", "LoadedModel", "DEMO_NOTICE", "VAE_AUTOMATIC", "VAE_NONE"]
