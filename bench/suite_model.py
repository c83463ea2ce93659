"""The benchmark suite's model and measuring tools: an SD 1.5-sized checkpoint with random weights, the
engine and bare diffusers over the same components, alternating timers and peak-memory meters.

Timings do not depend on the values of the weights, so the model is SD 1.5's shipped configs
(models/configs/sd15) with diffusers' default random init under a fixed seed: no download. It is written
once as an A1111-style single-file fp16 .safetensors (the LDM layout tests/ldm_export.py writes) and loaded
through the app's own loader, so the engine runs exactly what a user's checkpoint would.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the LDM export helpers

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

PROMPT = "a watercolor painting of a lighthouse at dusk, soft light"
CHECKPOINT_NAME = "sd15-random-fp16.safetensors"
SEED = 1234


# 1. The model ------------------------------------------------------------------------------------------
def write_sd15_checkpoint(folder: Path) -> Path:
    """SD 1.5's architecture with random weights (seed 0), saved as fp16 single-file LDM safetensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: PLC0415
    from ldm_export import ldm_state_dict, save_state_dict  # noqa: PLC0415
    from transformers import CLIPTextConfig, CLIPTextModel  # noqa: PLC0415

    from pipelines.models.checkpoint_loader import shipped_configs  # noqa: PLC0415
    from pipelines.models.components import SDComponents  # noqa: PLC0415

    path = folder / CHECKPOINT_NAME
    if path.is_file():
        return path
    configs = shipped_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # halved as soon as built: the fp32 copy of the UNet (3.4 GB) is never held beside its export
        unet = UNet2DConditionModel.from_config(configs["unet"]).half()
        vae = AutoencoderKL.from_config(configs["vae"]).half()
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"])).half()
    state = ldm_state_dict(SDComponents(unet, vae, text_encoder, None, None), half=True)
    del unet, vae, text_encoder
    save_state_dict(state, path)
    del state
    gc.collect()
    return path


@dataclass
class Bench:
    """One loaded model: the app's ModelManager and Engine, and bare diffusers pipelines on its components."""

    settings: Any
    policy: Any
    models: Any
    engine: Any
    load_seconds: float
    bare: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.policy.device


def open_bench(data_dir: Path, flags: tuple[str, ...] = ()) -> Bench:
    """The app's own stack (launch flags -> policy -> ModelManager -> Engine) on the checkpoint in data_dir."""
    from pipelines.device_policy import DevicePolicy  # noqa: PLC0415
    from pipelines.generation.engine import Engine  # noqa: PLC0415
    from pipelines.launch_flags import parse_flags  # noqa: PLC0415
    from pipelines.models.model_manager import ModelManager  # noqa: PLC0415

    settings = parse_flags(["--data-dir", str(data_dir), *flags])
    policy = DevicePolicy.from_settings(settings)
    models = ModelManager(settings, policy)
    started = time.perf_counter()
    models.load(None)
    load_seconds = time.perf_counter() - started
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    return Bench(settings, policy, models, engine, load_seconds)


def bare_pipeline(bench: Bench, kind: str) -> Any:
    """StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline on the very same components, Euler."""
    from diffusers import (  # noqa: PLC0415
        EulerDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
    )

    if kind not in bench.bare:
        components = bench.models.current.components
        cls = StableDiffusionImg2ImgPipeline if kind == "img2img" else StableDiffusionInpaintPipeline
        pipe = cls(**components.as_dict(), safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)
        pipe.scheduler = EulerDiscreteScheduler.from_config(components.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        bench.bare[kind] = pipe
    return bench.bare[kind]


def close_bench(bench: Bench) -> None:
    bench.bare.clear()
    bench.models.unload()
    gc.collect()
    bench.policy.empty_cache()


# 2. Inputs ---------------------------------------------------------------------------------------------
def test_image(size: int) -> Image.Image:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    rgb = torch.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).to(torch.uint8)
    return Image.fromarray(rgb.numpy(), "RGB")


def test_mask(size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=255)
    return mask


def engine_request(size: int, steps: int, batch: int, inpaint: bool = False) -> Any:
    from pipelines.generation.requests import Img2ImgRequest  # noqa: PLC0415

    return Img2ImgRequest(init_image=test_image(size), prompt=PROMPT, width=size, height=size, steps=steps,
                          denoising_strength=1.0, sampler_name="Euler", cfg_scale=7, seed=SEED,
                          batch_size=batch, save_images=False, mask=test_mask(size) if inpaint else None)


def bare_call(pipe: Any, size: int, steps: int, batch: int, inpaint: bool = False) -> Callable[[], Any]:
    extra = {"mask_image": test_mask(size), "height": size, "width": size} if inpaint else {}
    image = test_image(size)

    def run() -> Any:
        return pipe(prompt=PROMPT, image=image, strength=1.0, num_inference_steps=steps, guidance_scale=7,
                    num_images_per_prompt=batch, generator=torch.Generator("cpu").manual_seed(SEED), **extra)
    return run


# 3. Measuring ------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(runs: dict[str, Callable[[], Any]], rounds: int, device: torch.device,
              warmup: int = 1) -> dict[str, list[float]]:
    """Each run `warmup` times, then A B A B ... `rounds` times: seconds per call, in order."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class PeakMemory:
    """Peak memory of a block in MiB: on a GPU, CUDA's max_memory_allocated over the block (everything
    allocated, the weights included, so the memory modes compare as a card's budget); on the CPU, the
    process's peak resident set above what it held when the block started (VmHWM, reset through
    /proc/self/clear_refs): the weights are already resident there, so it is the run's working memory."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = float("nan")

    @contextmanager
    def measure(self) -> Iterator["PeakMemory"]:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        reset = _reset_peak_rss()
        base = _proc_status_kib("VmRSS")
        yield self
        if reset:
            self.peak_mib = (_proc_status_kib("VmHWM") - base) / 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_kib(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["cpu_flags"] = sorted(cpu_speed_flags())
    return info


def cpu_speed_flags() -> set[str]:
    """The lscpu/cpuinfo flags that decide fast CPU bf16 (AMX, AVX512-BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")}
