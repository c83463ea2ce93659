"""On a CUDA GPU: every set of weights leaves the GPU when it should (the tiny models of test_weights_owner).

GPU memory returns to its baseline after a checkpoint switch, an interrogation and (under --medvram) an
upscale; under --medvram/--lowvram the checkpoint's weights are off the GPU between calls and the peak is
below normal mode. Marked `gpu` (outside the default run); skipped where CUDA is missing.

    .venv/bin/python -m pytest -m gpu tests/test_gpu_memory.py
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from test_weights_owner import UPSCALER, image, manager, write_owner_models

from pipelines.device_policy import DevicePolicy, MemoryMode
from pipelines.generation.requests import Img2ImgRequest
from pipelines.launch_flags import parse_flags
from pipelines.models.upscalers import upscale

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TOLERANCE = 1 << 20  # 1 MiB: allocator block rounding; the tiny models themselves are a few MB


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_owner_models(tmp_path_factory.mktemp("gpu-owner"))


@pytest.fixture(autouse=True)
def warm_libraries():
    """cuBLAS/cuDNN keep a workspace per handle from their first use (tens of MB on recent GPUs, counted
    by memory_allocated): use them once, in both dtypes, before any baseline is taken."""
    for dtype in (torch.float16, torch.float32):
        x = torch.ones(1, 3, 16, 16, device="cuda", dtype=dtype)
        torch.nn.functional.conv2d(x, torch.ones(3, 3, 3, 3, device="cuda", dtype=dtype))
        (x.flatten(1) @ x.flatten(1).T).sum().item()
    yield


def allocated() -> int:
    gc.collect()
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def gpu_manager(data_dir: Path, *flags: str):
    models = manager(data_dir, None, *flags)
    assert models.policy.device.type == "cuda"
    return models


def bytes_of(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def on_gpu(module) -> bool:
    return any(p.device.type == "cuda" for p in module.parameters())


def request() -> Img2ImgRequest:
    return Img2ImgRequest(init_image=image().resize((64, 64)), width=64, height=64, steps=2, seed=1,
                          denoising_strength=0.6, save_images=False)


def test_a_checkpoint_switch_frees_every_set_of_weights(data_dir):
    baseline = allocated()
    models = gpu_manager(data_dir)
    models.load("a")
    models.pipeline("img2img")
    with_a = allocated()
    models.set_vae("v.safetensors")
    models.interrogator.interrogate(image())
    upscale(image(), UPSCALER, 2, data_dir / "models", models=models.upscalers)
    assert allocated() > with_a  # the upscaler (and the VAE file's VAE) are on the GPU now
    models.set_vae("None")
    models.load("b")
    models.load("a")
    models.pipeline("img2img")
    assert abs(allocated() - with_a) <= TOLERANCE
    models.unload()
    assert abs(allocated() - baseline) <= TOLERANCE


def test_an_interrogation_leaves_nothing_on_the_gpu(data_dir):
    models = gpu_manager(data_dir)
    models.load("a")
    before = allocated()
    assert models.interrogator.interrogate(image())
    assert models.interrogator.loaded_models() and not any(map(on_gpu, models.interrogator.loaded_models()))
    assert abs(allocated() - before) <= TOLERANCE


def test_keeping_interrogation_models_keeps_exactly_them(data_dir):
    models = gpu_manager(data_dir, "--interrogate-keep-models-in-memory")
    models.load("a")
    before = allocated()
    models.interrogator.interrogate(image())
    kept = sum(bytes_of(m) for m in models.interrogator.loaded_models())
    assert all(map(on_gpu, models.interrogator.loaded_models()))
    assert abs(allocated() - before - kept) <= TOLERANCE
    models.load("b")  # a switch frees them
    assert not models.interrogator.loaded_models()


def test_an_upscaler_stays_in_normal_mode_and_leaves_under_medvram(data_dir):
    normal = gpu_manager(data_dir)
    normal.load("a")
    before = allocated()
    upscale(image(), UPSCALER, 2, data_dir / "models", models=normal.upscalers)
    (model,) = normal.upscalers.loaded()
    assert abs(allocated() - before - bytes_of(model.model)) <= TOLERANCE  # cached on the GPU, nothing else
    normal.unload()
    del normal, model

    medvram = gpu_manager(data_dir, "--medvram")
    medvram.load("a")
    before = allocated()
    upscale(image(), UPSCALER, 2, data_dir / "models", models=medvram.upscalers)
    (model,) = medvram.upscalers.loaded()
    assert not on_gpu(model.model)
    assert abs(allocated() - before) <= TOLERANCE


def _img2img_peak(data_dir: Path, tmp_path: Path, *flags: str) -> tuple[int, int, object]:
    from pipelines.generation.engine import Engine

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = allocated()
    models = gpu_manager(data_dir, *flags)
    models.load("a")
    Engine(models, tmp_path).img2img(request())
    return torch.cuda.max_memory_allocated() - start, allocated() - start, models


@pytest.mark.parametrize("flag", ["--medvram", "--lowvram"])
def test_offload_keeps_weights_off_the_gpu_between_calls_and_lowers_the_peak(data_dir, tmp_path, flag):
    normal_peak, _, models = _img2img_peak(data_dir, tmp_path)
    models.unload()
    del models
    peak, left, models = _img2img_peak(data_dir, tmp_path, flag)
    assert models.policy.memory_mode is MemoryMode(flag.removeprefix("--"))
    components = models.current.components
    assert not any(on_gpu(m) for m in (components.unet, components.text_encoder, components.vae))
    assert left <= TOLERANCE  # nothing of the checkpoint stays on the GPU between calls
    assert peak < normal_peak


def test_the_policy_from_flags_is_cuda_fp16():
    policy = DevicePolicy.from_settings(parse_flags([]))
    assert policy.device.type == "cuda" and policy.dtype == torch.float16
