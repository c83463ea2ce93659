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
class SpeedOptions:
    """Opt-in speed-ups (launch flags), applied to the UNet when a checkpoint's parts are placed.
    bench/suite.py measures each; the README says what each gains on which hardware."""

    channels_last: bool = False  # --opt-channelslast: NHWC convolutions
    compile_unet: bool = False  # --compile-unet: torch.compile of the UNet (first run pays the compile)
    fuse_qkv: bool = False  # --fuse-qkv: one matmul for the q, k, v projections of every attention

    @classmethod
    def from_settings(cls, settings: Settings) -> "SpeedOptions":
        return cls(channels_last=getattr(settings, "opt_channelslast", False),
                   compile_unet=getattr(settings, "compile_unet", False),
                   fuse_qkv=getattr(settings, "fuse_qkv", False))

    def describe(self) -> str:
        names = [name for name, on in (("channels_last", self.channels_last), ("compile", self.compile_unet),
                                       ("fused-qkv", self.fuse_qkv)) if on]
        return "+".join(names) or "none"


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # UNet and text encoder
    vae_dtype: torch.dtype
    memory_mode: MemoryMode = MemoryMode.NORMAL
    speed: SpeedOptions = SpeedOptions()

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
        if device.type == "cpu" and settings.precision == "half" and not settings.no_half and cpu_has_fast_bf16():
            # Opt-in: bf16 UNet + text encoder on CPUs with bf16 units (2.9x faster in bench/suite.py on an
            # AVX512-BF16 CPU, pixels within a few levels of fp32); the VAE stays fp32 (its decode is sensitive).
            dtype = torch.bfloat16
        mode = MemoryMode.LOWVRAM if settings.lowvram else MemoryMode.MEDVRAM if settings.medvram else MemoryMode.NORMAL
        if mode is not MemoryMode.NORMAL and device.type != "cuda":
            log.warning("--%s has no effect on %s: offloading only helps with a CUDA GPU", mode.value, device.type)
            mode = MemoryMode.NORMAL
        return cls(device=device, dtype=dtype, vae_dtype=vae_dtype, memory_mode=mode,
                   speed=SpeedOptions.from_settings(settings))

    def describe(self) -> str:
        return (f"device={self.device}, dtype={_short(self.dtype)}, vae={_short(self.vae_dtype)}, "
                f"memory={self.memory_mode.value}, speed={self.speed.describe()}")

    def place_components(self, components: Any) -> None:
        """Cast loaded components (SDComponents) to the policy's dtypes; move them unless offloading."""
        # SDXL's second text encoder (OpenCLIP bigG) is placed like the first
        encoders = [m for m in (components.text_encoder, getattr(components, "text_encoder_2", None)) if m is not None]
        for module, dtype in ((components.unet, self.dtype), *((e, self.dtype) for e in encoders),
                              (components.vae, self.vae_dtype)):
            if module.dtype != dtype:  # skip no-op casts (diffusers warns on every .to(dtype))
                module.to(dtype=dtype)
        if self.memory_mode is MemoryMode.NORMAL:
            for module in (components.unet, *encoders, components.vae):
                self._move(module, self.device)
        apply_speed_options(components.unet, self.speed)

    def apply_to_pipeline(self, pipe: Any) -> None:
        """Attach offload hooks to a diffusers pipeline (no-op in normal mode: weights are already placed).

        --medvram is diffusers' model offload: one whole model on the GPU while it runs. The engine encodes
        prompts and pictures outside diffusers' call, so the VAE is also sent back after each use
        (offload_after_use). --lowvram streams weights layer by layer (sequential offload)."""
        pipe.set_progress_bar_config(disable=True)
        if self.memory_mode is MemoryMode.MEDVRAM:
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.memory_mode is MemoryMode.LOWVRAM:
            pipe.enable_sequential_cpu_offload(device=self.device)

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


def offload_after_use(module: Any) -> None:
    """Under model CPU offload (--medvram), send a model that has just run back to the CPU now.

    diffusers' hooks move a model to the GPU when it runs and off only when the *next* model of the chain
    runs; a model the engine calls outside the chain (the VAE's encode before the UNet loop) would otherwise
    hold GPU memory through the whole loop. A no-op for a model without such a hook (normal mode, and
    --lowvram, whose layer hooks stream the weights anyway)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return
    from accelerate.hooks import CpuOffload  # noqa: PLC0415 - accelerate is only needed once hooks exist

    if isinstance(hook, CpuOffload):
        hook.init_hook(module)  # accelerate's own offload: the module back to the CPU


def apply_speed_options(unet: Any, speed: SpeedOptions) -> None:
    """The opt-in speed options on a UNet; each step is skipped where it is already done (the parts are
    placed again on a VAE change)."""
    if speed.channels_last:
        unet.to(memory_format=torch.channels_last)
    if speed.fuse_qkv and not qkv_fused(unet):
        unet.fuse_qkv_projections()
    if speed.compile_unet and getattr(unet, "_compiled_call_impl", None) is None:
        # the module compiled in place: pipelines keep calling unet(...), the first call pays the compile
        unet.compile(fullgraph=False, dynamic=False)


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU features that make bf16 matmuls/convolutions faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def qkv_fused(unet: Any) -> bool:
    """Whether the UNet's attention runs fused projections (its processors say so: diffusers' unfuse restores
    the processors but leaves the modules' fused weights and flags in place)."""
    return any(type(p).__name__ == "FusedAttnProcessor2_0" for p in unet.attn_processors.values())


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
