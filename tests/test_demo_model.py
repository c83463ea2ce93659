"""The embedded demo model: tiny, SD 1.x-shaped, deterministic, fast."""

from __future__ import annotations

import time

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image

from pipelines.models.demo_model import build_demo_components, demo_configs


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def demo():
    return build_demo_components()


def test_same_seed_gives_bit_identical_weights(demo):
    again = build_demo_components()
    for part in ("unet", "vae", "text_encoder"):
        first, second = getattr(demo, part).state_dict(), getattr(again, part).state_dict()
        assert set(first) == set(second)
        assert all(torch.equal(first[k], second[k]) for k in first), part


def test_weights_are_not_trivial(demo):
    """A build that zeroed or constant-filled the weights would still be 'deterministic'."""
    embeddings = demo.text_encoder.get_input_embeddings().weight
    for weight in (demo.unet.conv_in.weight, demo.vae.encoder.conv_in.weight, embeddings):
        assert weight.std() > 0


def test_build_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_demo_components()
    assert torch.equal(torch.rand(3), expected)


def test_build_is_fast():
    build_demo_components()  # imports and first-call caches out of the way
    start = time.perf_counter()
    build_demo_components()
    assert time.perf_counter() - start < 5.0


def test_shapes_follow_sd1(demo):
    configs = demo_configs()
    assert set(configs) == {"unet", "vae", "text_encoder", "scheduler"}
    assert tuple(demo.unet.config.block_out_channels) == (32, 64)
    assert demo.unet.config.in_channels == 4 and not demo.is_inpainting
    assert demo.unet.config.cross_attention_dim == demo.text_encoder.config.hidden_size == 32
    assert demo.text_encoder.config.vocab_size == len(demo.tokenizer) == 49408
    assert demo.text_encoder.config.max_position_embeddings == demo.tokenizer.model_max_length == 77
    assert demo.vae.config.scaling_factor == pytest.approx(0.18215)
    scheduler = demo.scheduler.config
    assert (scheduler.num_train_timesteps, scheduler.beta_start, scheduler.beta_end) == (1000, 0.00085, 0.012)
    assert scheduler.beta_schedule == "scaled_linear"
    assert (scheduler.steps_offset, scheduler.set_alpha_to_one, scheduler.clip_sample) == (1, False, False)


def test_latent_is_one_eighth_of_the_image(demo):
    with torch.no_grad():
        latent = demo.vae.encode(torch.zeros(1, 3, 96, 64)).latent_dist.mean
        assert latent.shape == (1, 4, 12, 8)
        assert demo.vae.decode(latent).sample.shape == (1, 3, 96, 64)


def test_runs_in_a_real_img2img_pipeline_deterministically(demo):
    pipe = StableDiffusionImg2ImgPipeline(
        **demo.as_dict(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    image = Image.new("RGB", (64, 64), (200, 100, 50))

    def run():
        generator = torch.Generator().manual_seed(7)
        return pipe("a cat", image=image, strength=0.5, num_inference_steps=4, generator=generator,
                    output_type="np").images

    first, second = run(), run()
    assert first.shape == (1, 64, 64, 3)
    assert (first == second).all()
