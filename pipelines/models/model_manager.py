"""The one owner of loaded models: discovers checkpoints and VAEs, loads offline, swaps, frees.

It owns every set of weights: the checkpoint, its VAE (or a VAE file), the LoRA adapters and embeddings loaded
into it (`loras`, `embeddings`), the interrogation models (BLIP/CLIP) and the upscaler models; the device policy
places each. A checkpoint switch frees all of them.
"""

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
from pipelines.models.embeddings import EmbeddingLibrary
from pipelines.models.families import ModelFamily
from pipelines.models.family_probe import probe_family
from pipelines.models.interrogate import Interrogator
from pipelines.models.lora import LoraLibrary
from pipelines.models.sd_pipelines import build_img2img_pipeline, build_inpaint_pipeline
from pipelines.models.sdxl_pipelines import SDXL_PIPELINE_BUILDERS
from pipelines.models.txt2img_pipeline import build_txt2img_pipeline
from pipelines.models.upscalers import UpscalerModels

PIPELINE_BUILDERS = {"img2img": build_img2img_pipeline, "inpaint": build_inpaint_pipeline,
                     "txt2img": build_txt2img_pipeline}

log = logging.getLogger(__name__)

VAE_AUTOMATIC, VAE_NONE = "Automatic", "None"
DEMO_INFO = CheckpointInfo(name=DEMO_MODEL_NAME, path=None, short_hash=None)
DEMO_NOTICE = (
    "Running the embedded demo model: tiny and untrained, so images are noise-like. Put a Stable Diffusion "
    "1.x checkpoint (.safetensors or .ckpt) in models/Stable-diffusion/ and press refresh to use a real one."
)


class ModelNotFound(LookupError):
    """A checkpoint or VAE name that is not in the lists (the message lists the known names), or a file
    that was listed but is gone from disk."""


class NoModelLoaded(RuntimeError):
    """No checkpoint is in memory: start-up has not loaded one, or a switch and its recovery both failed."""


@dataclass
class LoadedModel:
    info: CheckpointInfo
    components: SDComponents
    # The VAE baked into the checkpoint, kept for switching back. While a VAE file replaces it, it waits on
    # the CPU: moving ~160 MB back is far cheaper than re-reading and converting the whole checkpoint file.
    own_vae: Any
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
        self._failure: str | None = None  # why no model is loaded, after a failed switch and recovery
        self._unloaded: CheckpointInfo | None = None  # set by unload_checkpoint() until the next load
        self._vae_choice = VAE_AUTOMATIC
        self.skipped: list[str] = []  # checkpoints start-up could not read: "file: reason"
        # The other weights this manager owns, placed by the same policy, freed on a checkpoint switch.
        self.upscalers = UpscalerModels(policy)
        self.interrogator = Interrogator(
            settings.models_dir / "BLIP", settings.models_dir / "CLIP", policy=policy,
            keep_models_in_memory=settings.interrogate_keep_models_in_memory, display_root=settings.data_dir)
        self.checkpoints: list[CheckpointInfo] = []
        self.vae_files: list[Path] = []
        # LoRA adapters and embeddings sit inside the loaded checkpoint's modules; a switch drops them.
        self.loras = LoraLibrary(settings.lora_dirs)
        self.embeddings = EmbeddingLibrary(settings.embeddings_dirs, self.hashes)
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
        """Every checkpoint found, then the embedded demo model: always there to fall back on."""
        return [c.title for c in self.checkpoints] + [DEMO_INFO.title]

    def vae_choices(self) -> list[str]:
        return [VAE_AUTOMATIC, VAE_NONE] + [p.name for p in self.vae_files]

    def find_checkpoint(self, name: str) -> CheckpointInfo:
        """By title ("name [hash]"), name, file name or short hash, like A1111's sd_model_checkpoint; the demo
        model by its name (a file of that name comes first)."""
        for c in self.checkpoints:
            file_title = f"{c.path.name} [{c.short_hash}]" if c.path is not None else None  # A1111's form
            if name in (c.title, c.name, c.short_hash, file_title) or (c.path is not None and name == c.path.name):
                return c
        if name in (DEMO_INFO.title, DEMO_INFO.name):
            return DEMO_INFO
        raise ModelNotFound(f"checkpoint {name!r} not found; known: {', '.join(self.checkpoint_titles())}")

    # 2. Loading and switching -----------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel:
        """The loaded model. Loading is explicit (app start-up calls load(None)), never done in a getter, but
        for one case: after unload_checkpoint() the next use loads the same checkpoint again, as A1111 brings
        an unloaded model back for the next generation."""
        with self._lock:  # waits for a switch in progress
            if self._current is None and self._unloaded is not None:
                self.reload_checkpoint()
            if self._current is None:
                raise NoModelLoaded(self._failure or "no checkpoint is loaded yet (start-up loads one)")
            return self._current

    @property
    def is_demo(self) -> bool:
        return self.current.info.is_demo

    def load(self, name: str | None) -> CheckpointInfo:
        """Load a checkpoint by name (None: --ckpt, else the first one found, else the demo model).

        The old weights are freed before the new ones are read (peak memory: one model). If the new ones
        fail, the previous checkpoint is loaded again and a CheckpointError names the file and the problem.
        At start-up (None, nothing loaded) an unreadable file is skipped with a warning and the next one is
        tried, down to the demo model, so a broken download never keeps the server from starting.
        """
        with self._lock:
            self._unloaded = None  # an explicit load replaces a pending reload
            if name is None and self._current is None:
                return self._load_at_startup()
            info = self._startup_choice() if name is None else self.find_checkpoint(name)
            if self._current is not None and self._current.info == info:
                return info
            vae_path = self._vae_path_for(info)  # a missing VAE file fails here, before anything is freed
            previous = self._current.info if self._current is not None else None
            self.unload()
            try:
                self._load_weights(info, vae_path)
            except Exception as exc:  # noqa: BLE001 - whatever broke (bad file, out of memory): recover, say why
                raise self._recover(info, previous, exc) from exc
            self._failure = None
            log.info("Loaded %s (%s)", info.title, self.policy.describe())
            return info

    def unload(self) -> None:
        """Free every set of weights this manager owns: the checkpoint with its VAEs, the upscaler models and
        the interrogation models (they are loaded again on their next use); then the device's cache."""
        with self._lock:
            self._current = None
            self.loras.forget()
            self.embeddings.forget()
            self.upscalers.clear()
            self.interrogator.unload()
            gc.collect()
            self.policy.empty_cache()

    def unload_checkpoint(self) -> CheckpointInfo | None:
        """A1111's unload-checkpoint: free every set of weights (RAM and VRAM) and remember the checkpoint;
        reload_checkpoint(), or the next use of `current`, loads it again. Returns what was unloaded."""
        with self._lock:
            if self._current is not None:
                self._unloaded = self._current.info
                self.unload()
                log.info("Unloaded %s (it loads again on its next use)", self._unloaded.title)
            return self._unloaded

    def reload_checkpoint(self) -> CheckpointInfo:
        """A1111's reload-checkpoint: the unloaded checkpoint back in memory (a no-op while one is loaded;
        with nothing loaded and nothing unloaded, the start-up choice)."""
        with self._lock:
            if self._current is not None:
                return self._current.info
            unloaded = self._unloaded
            return self.load(unloaded.title if unloaded is not None else None)

    @property
    def active_info(self) -> CheckpointInfo | None:
        """The loaded checkpoint, or the unloaded one that comes back on next use; None when neither
        (reading it never loads anything)."""
        with self._lock:
            return self._current.info if self._current is not None else self._unloaded

    def _load_weights(self, info: CheckpointInfo, vae_path: Path | None) -> None:
        components = (build_demo_components() if info.is_demo
                      else load_checkpoint(info.path, self.policy.dtype, vae_dtype=self.policy.vae_dtype))
        self._current = LoadedModel(info, components, own_vae=components.vae)
        self._apply_vae(vae_path)

    def _recover(self, failed: CheckpointInfo, previous: CheckpointInfo | None,
                 error: Exception) -> Exception:
        """After a failed load: free what half-loaded, load `previous` again; the error to raise says both."""
        problem = str(error) if isinstance(error, CheckpointError) else \
            f"{failed.path or failed.title}: {type(error).__name__}: {error}"
        self.unload()
        if previous is None:
            message = f"Loading {failed.title} failed: {problem}"
        else:
            try:
                self._load_weights(previous, self._vae_path_for(previous))
                message = f"Loading {failed.title} failed, so {previous.title} is loaded again: {problem}"
            except Exception as again:  # noqa: BLE001 - reported with the first error
                self.unload()
                message = (f"Loading {failed.title} failed: {problem}; loading {previous.title} again failed "
                           f"too: {again}. Choose a checkpoint to load.")
        log.error("%s", message)
        self._failure = None if self._current is not None else message
        return CheckpointError(message)

    def _load_at_startup(self) -> CheckpointInfo:
        """The start-up choice, else each other checkpoint in order, else the demo model; each file that fails
        is logged as a warning and kept in `skipped` (the status line says so)."""
        first = self._startup_choice()
        candidates = [first] + [c for c in self.checkpoints if c != first]
        if DEMO_INFO not in candidates:
            candidates.append(DEMO_INFO)
        self.skipped = []
        for info in candidates:
            try:
                vae_path = self._vae_path_for(info)
                self._load_weights(info, vae_path)
            except Exception as exc:  # noqa: BLE001 - any broken file: say which and why, try the next
                problem = str(exc) if isinstance(exc, (CheckpointError, ModelNotFound)) else \
                    f"{info.path or info.title}: {type(exc).__name__}: {exc}"
                if info.is_demo:
                    raise  # the embedded model failing is a bug, not a bad file
                self.unload()
                self.skipped.append(problem)
                log.warning("Skipping checkpoint %s at start-up: %s", info.title, problem)
                continue
            self._failure = None
            log.info("Loaded %s (%s)", info.title, self.policy.describe())
            return info
        raise AssertionError("unreachable: the demo model is the last candidate")

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
            previous, self._vae_choice = self._vae_choice, choice
            try:
                if self._current is not None:
                    self._apply_vae(self._vae_path_for(self._current.info))
                elif choice not in (VAE_AUTOMATIC, VAE_NONE):  # no model to apply it to: still check the file
                    load_vae(self._vae_path_for(DEMO_INFO), self.policy.vae_dtype)
            except Exception:
                self._vae_choice = previous  # a broken choice is never recorded (load_vae runs first)
                raise

    def _apply_vae(self, path: Path | None) -> None:
        model = self._current
        assert model is not None
        if path is None:
            vae, model.vae_name, model.vae_hash = model.own_vae, None, None
        else:
            vae = self._fitting_vae(path, model)
            model.vae_name, model.vae_hash = path.name, self._hash_of(path)
            self.policy.park(model.own_vae)  # off the GPU while the file's VAE is used (see LoadedModel)
        model.components = copy.copy(model.components)
        model.components.vae = vae
        self.policy.place_components(model.components)
        model._pipelines.clear()

    def _fitting_vae(self, path: Path, model: LoadedModel) -> Any:
        """load_vae, with errors naming the loaded model's family (the usual cause is a VAE for another one)."""
        family = model.components.family.label
        try:
            vae = load_vae(path, self.policy.vae_dtype)
        except CheckpointError as error:
            raise CheckpointError(f"{error} (the loaded model is {family})") from None
        wanted = model.own_vae.config.latent_channels
        if vae.config.latent_channels != wanted:
            raise CheckpointError(f"{path.name}: a VAE with {vae.config.latent_channels} latent channels does not "
                                  f"fit the loaded {family} model ({wanted})")
        # The latent scale belongs to the model, not the VAE file (A1111 swaps only the weights): an SDXL
        # "fp16-fix" VAE file needs SDXL's 0.13025, which the file itself does not say.
        vae.register_to_config(scaling_factor=model.own_vae.config.scaling_factor)
        return vae

    def _vae_path_for(self, info: CheckpointInfo) -> Path | None:
        """None -> the checkpoint's own VAE. Automatic: --vae-path, else a VAE file named after the model.
        A chosen file that is gone raises ModelNotFound naming it (the lists are only as fresh as refresh)."""
        if self._vae_choice == VAE_NONE:
            return None
        if self._vae_choice != VAE_AUTOMATIC:
            path = next((p for p in self.vae_files if p.name == self._vae_choice), None)
            if path is None or not path.exists():
                raise ModelNotFound(f"VAE file {path or self._vae_choice} no longer exists; press refresh "
                                    f"and choose another VAE")
            return path
        if self.settings.vae_path is not None:
            if not self.settings.vae_path.exists():
                raise ModelNotFound(f"--vae-path {self.settings.vae_path}: the file does not exist")
            return self.settings.vae_path
        if info.path is not None:
            for candidate in self.vae_files:  # Automatic: a file deleted since the last refresh is skipped
                if candidate.name.split(".")[0] == info.path.name.split(".")[0] and candidate.exists():
                    return candidate
        return None

    # 4. Pipelines over the shared weights ---------------------------------------------------------------
    def pipeline(self, kind: str = "img2img") -> Any:
        """The diffusers pipeline for `kind`, built once per model over the same components (no copies)."""
        with self._lock:
            model = self.current
            if kind not in model._pipelines:
                builders = SDXL_PIPELINE_BUILDERS if model.components.family is ModelFamily.SDXL else PIPELINE_BUILDERS
                pipe = builders[kind](model.components)
                self.policy.apply_to_pipeline(pipe)
                model._pipelines[kind] = pipe
            return model._pipelines[kind]

    def family_of(self, info: CheckpointInfo) -> ModelFamily | None:
        """A listed checkpoint's family: the loaded model's own, else what its file's layout says (None when
        that cannot be told without reading the whole file, e.g. a .ckpt not loaded). Never loads anything."""
        with self._lock:
            if self._current is not None and self._current.info == info:
                return self._current.components.family
        return ModelFamily.SD1 if info.is_demo else probe_family(info.path)

    def status_line(self) -> str:
        model = self.current
        line = DEMO_NOTICE if model.info.is_demo else \
            f"Model: {model.info.title} ({model.components.family.label}" + \
            (", v-prediction)" if model.components.v_prediction else ")") + \
            (f", VAE: {model.vae_name}" if model.vae_name else "")
        if self.skipped:
            line += " Skipped at start-up (unreadable): " + "; ".join(self.skipped)
        return line


__all__ = ["ModelManager", "ModelNotFound", "NoModelLoaded", "CheckpointError", "LoadedModel", "DEMO_NOTICE",
           "VAE_AUTOMATIC", "VAE_NONE"]
