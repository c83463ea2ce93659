"""Pixels <-> latents in the VAE's own dtype, and A1111's automatic fp32 retry when an fp16 decode overflows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.device_policy import DevicePolicy
from pipelines.generation.requests import Img2ImgRequest
from pipelines.models.demo_model import build_demo_components
from pipelines.models.vae_codec import NAN_FALLBACK_NOTICE, decode_latents, encode_images, images_from_pixels

CPU = torch.device("cpu")


def overflowing_fp16_vae():
    """The demo VAE with a first decoder layer whose outputs pass fp16's 65504 (its weights still fit):
    like SDXL's VAE, it decodes fine in fp32 and to inf/NaN in fp16."""
    vae = build_demo_components().vae
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(20000)
    assert vae.decoder.conv_in.weight.abs().max() < 60000
    return vae.to(torch.float16)


def test_encode_and_decode_run_in_the_vaes_dtype_whatever_the_latents_dtype():
    vae = build_demo_components().vae.to(torch.float32)
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8))
    latents = encode_images(vae, [image], CPU)
    assert latents.dtype == torch.float32 and latents.shape == (1, 4, 8, 8)
    # fp16 latents from an fp16 UNet into an fp32 VAE (--no-half-vae): cast, not a dtype error.
    pixels = decode_latents(vae, latents.half())
    assert pixels.dtype == torch.float32 and pixels.shape == (1, 3, 64, 64)
    assert images_from_pixels(pixels)[0].size == (64, 64)


def test_an_fp16_decode_that_overflows_is_redone_in_fp32_once_and_said():
    vae = overflowing_fp16_vae()
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 4
    raw = vae.decode(latents.half() / vae.config.scaling_factor).sample
    assert not torch.isfinite(raw).all()  # the premise: fp16 really overflows here
    notices: list[str] = []
    pixels = decode_latents(vae, latents.half(), notices)
    assert torch.isfinite(pixels).all()
    assert vae.dtype == torch.float32  # converted for good, as A1111's fallback does: later decodes go straight
    assert notices == [NAN_FALLBACK_NOTICE]
    decode_latents(vae, latents, notices)
    assert notices == [NAN_FALLBACK_NOTICE]


def test_a_finite_fp16_decode_stays_fp16():
    vae = build_demo_components().vae.to(torch.float16)
    notices: list[str] = []
    decode_latents(vae, torch.randn(1, 4, 8, 8).half(), notices)
    assert vae.dtype == torch.float16 and notices == []


@pytest.fixture
def fp16_engine(tmp_path):
    return make_demo_engine(tmp_path, preview_every=0, policy=DevicePolicy(CPU, torch.float16, torch.float16))


def test_the_engine_reports_the_fallback_in_the_results_notices(fp16_engine):
    vae = fp16_engine.models.current.components.vae
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(20000)
    image = Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64, 3), dtype=np.uint8))
    result = fp16_engine.img2img(Img2ImgRequest(init_image=image, width=64, height=64, steps=3, seed=1,
                                                save_images=False))
    assert result.notices == [NAN_FALLBACK_NOTICE]
    assert np.asarray(result.images[0]).std() > 1  # a picture, not the black of NaNs
