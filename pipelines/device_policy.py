"""The one place that decides device, dtypes and offloading, from the launch flags, once at start-up."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import torch

from pipelines.launch_flags import Settings

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


class MemoryMode(enum.Enum):
    NORMAL = "normal"
    MEDVRAM = "medvram"  # diffusers model CPU offload: whole models swapped onto the GPU when used
    LOWVRAM = "lowvram"  # diffusers sequential CPU offload: weights streamed layer by layer


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoder
    vae_dtype: torch.dtype
    memory_mode: MemoryMode = MemoryMode.NORMAL

    @classmethod
    def from_settings(cls, settings: Settings, cuda_available: bool | None = None,
                      mps_available: bool | None = None) -> "DevicePolicy":
        cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
        mps = _mps_available() if mps_available is None else mps_available
        if settings.use_cpu or not (cuda or mps):
            device = torch.device("cpu")
        elif cuda:
            device = torch.device("cuda", settings.device_id or 0)
        else:
            device = torch.device("mps")
        # fp16 on accelerators unless asked otherwise; the CPU has no fast fp16 path, so always fp32 there.
        half = device.type != "cpu" and not settings.no_half and settings.precision != "full"
        dtype = torch.float16 if half else torch.float32
        vae_dtype = torch.float32 if settings.no_half_vae else dtype
        mode = MemoryMode.LOWVRAM if settings.lowvram else MemoryMode.MEDVRAM if settings.medvram else MemoryMode.NORMAL
        if mode is not MemoryMode.NORMAL and device.type != "cuda":
            log.warning("--%s has no effect on %s: offloading only helps with a CUDA GPU", mode.value, device.type)
            mode = MemoryMode.NORMAL
        return cls(device=device, dtype=dtype, vae_dtype=vae_dtype, memory_mode=mode)

    def describe(self) -> str:
        return (f"device={self.device}, dtype={_short(self.dtype)}, vae={_short(self.vae_dtype)}, "
                f"memory={self.memory_mode.value}")

    def place_components(self, components: Any) -> None:
        """Cast loaded components (SDComponents) to the policy's dtypes; move them unless offloading."""
        for module, dtype in ((components.unet, self.dtype), (components.text_encoder, self.dtype),
                              (components.vae, self.vae_dtype)):
            if module.dtype != dtype:  # skip no-op casts (diffusers warns on every .to(dtype))
                module.to(dtype=dtype)
        if self.memory_mode is MemoryMode.NORMAL:
            for module in (components.unet, components.text_encoder, components.vae):
                self._move(module, self.device)

    def apply_to_pipeline(self, pipe: Any) -> None:
        """Attach offload hooks to a diffusers pipeline (no-op in normal mode: weights are already placed)."""
        pipe.set_progress_bar_config(disable=True)
        if self.memory_mode is MemoryMode.MEDVRAM:
            pipe.enable_model_cpu_offload(gpu_id=self.device.index or 0)
        elif self.memory_mode is MemoryMode.LOWVRAM:
            pipe.enable_sequential_cpu_offload(gpu_id=self.device.index or 0)

    # Auxiliary models (interrogation, upscalers): loaded onto the CPU, placed here around each call.
    def place_for_use(self, module: Any) -> Any:
        """Move an auxiliary model onto the device for a call (a no-op where it already is)."""
        return self._move(module, self.device)

    def release_after_use(self, module: Any, keep: bool = True) -> Any:
        """After a call: stay on the device for the next one only in normal mode and when the caller keeps
        it; under --medvram/--lowvram the GPU belongs to the checkpoint, so the model goes back to the CPU."""
        if keep and self.memory_mode is MemoryMode.NORMAL:
            return module
        return self._to_cpu(module)

    def park(self, module: Any) -> Any:
        """A checkpoint part kept but not in use (its own VAE while a VAE file replaces it): on the CPU, so
        the device holds only what runs. Under --medvram/--lowvram it is left alone: the offload hooks keep
        it off the GPU already and own where its weights are (sequential offload leaves them on "meta")."""
        if self.memory_mode is not MemoryMode.NORMAL:
            return module
        return self._to_cpu(module)

    def _to_cpu(self, module: Any) -> Any:
        moved = self._move(module, CPU)
        self.empty_cache()
        return moved

    def _move(self, module: Any, device: torch.device) -> Any:
        # one seam for every placement move, so tests can watch where weights go without a GPU
        return module.to(device)

    @property
    def execution_device(self) -> torch.device:
        return self.device

    def empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
