"""test_dtypes' matrix on the tiny SDXL model: fp16 and fp16 UNet + fp32 VAE on the CPU against fp32, 4- and
9-channel; on a CUDA GPU (marked `gpu`) also --medvram / --lowvram, whose offload must cover both text encoders.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from sdxl_export import write_tiny_sdxl
from test_dtypes import CASES, POLICIES, assert_sane, pixels

from pipelines.device_policy import DevicePolicy, MemoryMode

F16 = torch.float16
SDXL_CASES = ["img2img", "inpaint", "variation seed"]  # batches: test_sdxl.py
NINE_CASES = ["img2img", "inpaint"]


def _sdxl_data(root, channels: int):
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    write_tiny_sdxl(folder / f"tiny-xl-{channels}.safetensors", in_channels=channels, seed=channels)
    return root


@pytest.fixture(scope="module")
def xl_engines(tmp_path_factory):
    cache = {}

    def get(policy, channels: int = 4):
        name = policy if isinstance(policy, str) else f"{policy.device}-{policy.memory_mode.value}"
        if (name, channels) not in cache:
            data = _sdxl_data(tmp_path_factory.mktemp("xl"), channels)
            chosen = POLICIES[policy] if isinstance(policy, str) else policy
            cache[name, channels] = make_demo_engine(data, preview_every=0, policy=chosen)
        return cache[name, channels]

    return get


def _run(engine, case):
    req = CASES[case]().replace(steps=3)
    return req, engine.img2img(req)


def _images(result):
    return result.images[getattr(result, "index_of_first_image", 0):]  # a grid may lead a batch's images


def assert_ran_in(engine, policy: DevicePolicy):
    components = engine.models.current.components
    for module in (components.unet, components.text_encoder, components.text_encoder_2):
        assert module.dtype == policy.dtype
    assert components.vae.dtype == policy.vae_dtype


@pytest.mark.parametrize("policy", ["fp16", "fp16-unet+fp32-vae"])
@pytest.mark.parametrize("channels,case", [(4, c) for c in SDXL_CASES] + [(9, c) for c in NINE_CASES])
def test_sdxl_half_precision_matches_fp32(xl_engines, policy, channels, case):
    engine = xl_engines(policy, channels)
    req, result = _run(engine, case)
    assert_sane(req, result)
    assert_ran_in(engine, POLICIES[policy])
    _, reference = _run(xl_engines("fp32", channels), case)
    for image, ref in zip(_images(result), _images(reference)):
        assert np.abs(pixels(image) - pixels(ref)).mean() < 6


def _on_gpu(module) -> bool:
    return any(p.device.type == "cuda" for p in module.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", [MemoryMode.MEDVRAM, MemoryMode.LOWVRAM])
def test_sdxl_offload_runs_and_leaves_every_part_off_the_gpu(xl_engines, mode):
    policy = DevicePolicy(torch.device("cuda"), F16, F16, mode)
    engine = xl_engines(policy)
    req, result = _run(engine, "img2img")
    assert_sane(req, result)
    components = engine.models.current.components
    parts = (components.unet, components.text_encoder, components.text_encoder_2, components.vae)
    assert not any(_on_gpu(m) for m in parts)
    _, reference = _run(xl_engines("fp32"), "img2img")
    assert np.abs(pixels(_images(result)[0]) - pixels(_images(reference)[0])).mean() < 8
