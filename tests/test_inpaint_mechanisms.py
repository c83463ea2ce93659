"""Inpainting's mechanisms, pinned at the latent level (outcome tests alone pass without them):

- a regular (4-channel) model gets the original, noised to the step's level, put back outside the mask
  before every UNet call;
- soft inpainting lets a latent pixel of mask value v follow the sampler only in the last v of the steps;
- the whole-picture composite uses A1111's doubled overlay mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture, box_mask

from pipelines.generation.inpaint_prep import plan_inpaint, prepare_request_mask
from pipelines.generation.noise import initial_noise
from pipelines.generation.requests import Img2ImgRequest


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def request(**kw):
    base = dict(init_image=blocky_picture(), mask=box_mask((64, 64), (16, 16, 47, 47)), prompt="a cat",
                width=64, height=64, steps=6, seed=7,
                mask_blur_x=0, mask_blur_y=0, denoising_strength=1.0, sampler_name="DDIM", save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


def unet_inputs(engine, req):
    """Run `req`; return the start latents, latent mask, and (latents, timestep) the UNet saw at each step.

    DDIM does not scale the model input, so what the UNet sees is the sampler's latents themselves."""
    pipe = engine.models.pipeline("img2img")
    with torch.inference_mode():
        prepared = engine._prepare(req.replace(), pipe, [], req.steps)
    seen = []

    def record(_module, args, kwargs):
        sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
        seen.append((sample[0].clone(), int(timestep)))  # [0]: the conditional half of the CFG batch

    handle = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        engine.img2img(req)
    finally:
        handle.remove()
    return pipe, prepared.init_latents[0], prepared.mask[0, 0], seen


def noised_original(pipe, start, req, timestep):
    noise = initial_noise(tuple(start.shape), req.seed, req.seed, 0.0)
    return pipe.scheduler.add_noise(start[None], noise[None], torch.tensor([timestep]))[0]


def test_four_channel_model_gets_the_noised_original_outside_the_mask_before_every_step(engine):
    req = request()
    pipe, start, mask, seen = unet_inputs(engine, req)
    outside = mask == 0
    # A1111's DDIM at 6 steps, strength 1: t_enc = 5, calls at timesteps[4..1] = 665, 499, 333, 167
    assert [t for _, t in seen] == [665, 499, 333, 167] and outside.any() and (~outside).any()
    for step, (latents, timestep) in enumerate(seen[1:], start=1):
        expected = noised_original(pipe, start, req, timestep)
        assert torch.allclose(latents[:, outside], expected[:, outside], atol=1e-5), f"step {step}"
        # ...while inside the mask the sampler's own latents go on.
        assert not torch.allclose(latents[:, ~outside], expected[:, ~outside], atol=1e-2)


def test_soft_inpainting_opens_each_latent_pixel_for_the_last_v_of_the_steps(engine):
    req = request(soft_inpainting=True, mask_blur_x=12, mask_blur_y=12)
    pipe, start, mask, seen = unet_inputs(engine, req)
    steps = len(seen)
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 20  # plenty of partial values to schedule
    held_counts = []
    for step, (latents, timestep) in enumerate(seen[1:], start=1):
        expected = noised_original(pipe, start, req, timestep)
        held = mask <= 1 - step / steps  # not yet opened after `step` steps
        same = (latents - expected).abs().amax(dim=0) < 1e-5
        assert same[held].all(), f"step {step}: a pixel opened too early"
        assert not same[~held].any(), f"step {step}: an opened pixel was reset to the original"
        held_counts.append(int(held.sum()))
    assert held_counts == sorted(held_counts, reverse=True) and held_counts[0] > held_counts[-1]


def test_whole_picture_composite_uses_the_doubled_overlay_mask():
    req = request(mask_blur_x=6, mask_blur_y=6)
    plan = plan_inpaint(req)
    mask = np.asarray(prepare_request_mask(req), dtype=np.int32)
    overlay = np.asarray(plan.overlay_mask, dtype=np.int32)
    assert ((mask > 0) & (mask < 255)).sum() > 100
    assert np.array_equal(overlay, np.clip(mask * 2, 0, 255))
