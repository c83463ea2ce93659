"""Speed options, VAE tiling, the device-side preview and --medvram's VAE offload: correctness, never timing
(bench/suite.py measures speed). Each option on gives finite pictures of the right size, the same pixels as
off where the maths is the same, and the mechanism it names is really in place.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture

from pipelines.device_policy import DevicePolicy, MemoryMode, SpeedOptions, cpu_has_fast_bf16, offload_after_use
from pipelines.generation.latent_preview import latent_preview
from pipelines.generation.requests import Img2ImgRequest
from pipelines.launch_flags import parse_flags
from pipelines.models.demo_model import build_demo_components
from pipelines.models.vae_codec import TILE_ABOVE_PX, decode_latents, encode_pixels

CPU = torch.device("cpu")


def request(**changes) -> Img2ImgRequest:
    values = dict(init_image=blocky_picture(64, 64), prompt="a lighthouse", width=64, height=64, steps=4,
                  denoising_strength=0.75, sampler_name="Euler", seed=7, save_images=False)
    return Img2ImgRequest(**{**values, **changes})


def pixels(result) -> np.ndarray:
    """The run's images (after a grid, where one leads the list: there is one image per seed)."""
    return np.stack([np.asarray(image, np.int16) for image in result.images[-len(result.seeds):]])


def policy_with(**speed) -> DevicePolicy:
    return DevicePolicy(device=CPU, dtype=torch.float32, vae_dtype=torch.float32, speed=SpeedOptions(**speed))


@pytest.fixture(scope="module")
def plain_pixels(tmp_path_factory) -> np.ndarray:
    engine = make_demo_engine(tmp_path_factory.mktemp("plain"), preview_every=0)
    return pixels(engine.img2img(request(batch_size=2)))


def test_speed_flags_reach_the_policy():
    settings = parse_flags(["--opt-channelslast", "--compile-unet", "--fuse-qkv"])
    speed = DevicePolicy.from_settings(settings, cuda_available=False).speed
    assert speed == SpeedOptions(channels_last=True, compile_unet=True, fuse_qkv=True)
    assert DevicePolicy.from_settings(parse_flags([]), cuda_available=False).speed == SpeedOptions()
    assert "channels_last+compile+fused-qkv" in DevicePolicy.from_settings(settings, cuda_available=False).describe()


def test_channels_last_puts_the_unet_in_nhwc_and_keeps_the_pixels(tmp_path, plain_pixels):
    engine = make_demo_engine(tmp_path, preview_every=0, policy=policy_with(channels_last=True))
    unet = engine.models.current.components.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not unet.conv_in.weight.is_contiguous()
    out = pixels(engine.img2img(request(batch_size=2)))
    assert out.shape == plain_pixels.shape
    assert np.abs(out - plain_pixels).max() <= 2  # same maths, another summation order


def test_fused_qkv_projections_are_used_and_keep_the_pixels(tmp_path, plain_pixels):
    engine = make_demo_engine(tmp_path, preview_every=0, policy=policy_with(fuse_qkv=True))
    unet = engine.models.current.components.unet
    fused = [m for m in unet.modules() if getattr(m, "fused_projections", False)]
    assert fused, "no attention block was fused"
    assert all(type(p).__name__ == "FusedAttnProcessor2_0" for p in unet.attn_processors.values())
    out = pixels(engine.img2img(request(batch_size=2)))
    assert out.shape == plain_pixels.shape
    assert np.abs(out - plain_pixels).max() <= 2


def test_placing_the_parts_again_does_not_fuse_or_compile_twice(tmp_path):
    engine = make_demo_engine(tmp_path, preview_every=0, policy=policy_with(fuse_qkv=True, compile_unet=True))
    components = engine.models.current.components
    unet = components.unet
    compiled = unet._compiled_call_impl
    assert compiled is not None  # compiled in place: the pipelines keep calling unet(...)
    fused = fused_layers(unet)
    engine.models.policy.place_components(components)  # what a VAE change does
    assert unet._compiled_call_impl is compiled
    assert fused_layers(unet) == fused  # the very same fused layers, not fused again


def fused_layers(unet) -> list:
    return [getattr(m, "to_qkv", None) or m.to_kv for m in unet.modules() if getattr(m, "fused_projections", False)]


def test_preview_is_the_linear_latent_map_at_an_eighth_of_the_size():
    latents = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    preview = latent_preview(latents)
    assert preview.size == (12, 8) and preview.mode == "RGB"
    weights = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                            [-0.184, -0.271, -0.473]])
    expected = ((torch.einsum("chw,cr->hwr", latents[0], weights) + 1) / 2).clamp(0, 1).mul(255).round()
    assert np.abs(np.asarray(preview, np.int16) - expected.numpy().astype(np.int16)).max() <= 1
    half = latent_preview(latents.half())  # an fp16 UNet's latents give the same picture
    assert np.abs(np.asarray(half, np.int16) - np.asarray(preview, np.int16)).max() <= 1
    sdxl = latent_preview(latents, sdxl=True)  # SDXL's latent space: A1111's SDXL map
    weights = torch.tensor([[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163],
                            [-0.3730, -0.2499, -0.2088]])
    expected = ((torch.einsum("chw,cr->hwr", latents[0], weights) + 1) / 2).clamp(0, 1).mul(255).round()
    assert np.abs(np.asarray(sdxl, np.int16) - expected.numpy().astype(np.int16)).max() <= 1


def test_decodes_above_1024_px_are_tiled_and_below_are_not():
    vae = build_demo_components().vae
    generator = torch.Generator().manual_seed(0)
    big = torch.randn(1, 4, TILE_ABOVE_PX // 8 + 2, TILE_ABOVE_PX // 8 + 2, generator=generator)
    auto = decode_latents(vae, big)
    assert auto.shape == (1, 3, TILE_ABOVE_PX + 16, TILE_ABOVE_PX + 16) and torch.isfinite(auto).all()
    assert torch.equal(auto, decode_latents(vae, big, tiling=True))
    assert not torch.equal(auto, decode_latents(vae, big, tiling=False))  # tiles really were used
    assert not vae.use_tiling  # the VAE's own setting is restored
    small = torch.randn(1, 4, 64, 64, generator=generator)
    assert torch.equal(decode_latents(vae, small), decode_latents(vae, small, tiling=False))


def test_encodes_above_1024_px_are_tiled():
    vae = build_demo_components().vae
    side = TILE_ABOVE_PX + 16
    pixels_in = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1
    auto = encode_pixels(vae, pixels_in, CPU)
    assert auto.shape == (1, 4, side // 8, side // 8) and torch.isfinite(auto).all()
    assert torch.equal(auto, encode_pixels(vae, pixels_in, CPU, tiling=True))
    assert not torch.equal(auto, encode_pixels(vae, pixels_in, CPU, tiling=False))


def test_medvram_hooks_give_the_same_pixels_as_normal_mode(tmp_path, plain_pixels):
    """Model offload's hooks (here with the CPU as the execution device) around the engine's own VAE and
    text-encoder calls: the same run, the same pixels."""
    policy = DevicePolicy(device=CPU, dtype=torch.float32, vae_dtype=torch.float32, memory_mode=MemoryMode.MEDVRAM)
    engine = make_demo_engine(tmp_path, preview_every=0, policy=policy)
    out = pixels(engine.img2img(request(batch_size=2)))
    assert engine.models.pipeline("img2img")._all_hooks  # the offload hooks are really in place
    assert np.array_equal(out, plain_pixels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_under_medvram_the_vae_leaves_the_gpu_after_an_encode_and_a_decode(tmp_path):
    settings = parse_flags(["--data-dir", str(tmp_path), "--medvram"])
    engine = make_demo_engine(tmp_path, preview_every=0, policy=DevicePolicy.from_settings(settings))
    pipe = engine.models.pipeline("img2img")
    vae = pipe.vae
    latents = encode_pixels(vae, torch.zeros(1, 3, 64, 64), torch.device("cuda"))
    assert latents.device.type == "cuda" and next(vae.parameters()).device.type == "cpu"
    decode_latents(vae, latents)
    assert next(vae.parameters()).device.type == "cpu"
    offload_after_use(vae)  # a no-op when already back
    result = engine.img2img(request())
    assert result.images[0].size == (64, 64) and next(vae.parameters()).device.type == "cpu"


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU has no bf16 units (AVX512-BF16 / AMX)")
def test_precision_half_on_a_bf16_cpu_runs_bf16_with_the_vae_in_fp32(tmp_path, plain_pixels):
    policy = DevicePolicy.from_settings(parse_flags(["--precision", "half"]), cuda_available=False,
                                        mps_available=False)
    assert (policy.dtype, policy.vae_dtype) == (torch.bfloat16, torch.float32)
    engine = make_demo_engine(tmp_path, preview_every=0, policy=policy)
    assert engine.models.current.components.unet.dtype == torch.bfloat16
    out = pixels(engine.img2img(request(batch_size=2)))
    assert out.shape == plain_pixels.shape
    assert np.abs(out - plain_pixels).mean() < 8  # bf16 rounding, not another picture
