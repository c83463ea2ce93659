"""The embedded demo model: a tiny, untrained SD-architecture model built in memory from config.

It is what the app runs when models/Stable-diffusion/ is empty, so every code path (img2img, inpaint,
scripts, API) works out of the box and in tests; its images are noise-like, not art.
Shapes follow SD 1.x so the engine needs no special cases: 4 latent channels, a 4-level VAE (latent =
image / 8), CLIP tokenizer with 77 tokens, SD 1.5's scheduler config. Sizes are tiny so a 512x512
img2img of 15 steps takes a few seconds on two CPU cores. Cross-attention sits only at the lower-
resolution UNet level (unlike SD, which has it at the top level too): at 64x64 latents, attention at
full resolution made each run ~5x slower.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.models.checkpoint_loader import (
    CONFIGS_DIR,
    SD15_CONFIG_DIR,
    read_json_config,
    scheduler_from_config,
    shipped_tokenizer,
)
from pipelines.models.components import SDComponents

DEMO_CONFIG_DIR = CONFIGS_DIR / "demo"
DEMO_SEED = 0


def demo_configs() -> dict[str, dict[str, Any]]:
    """The demo's unet, vae and text_encoder configs (models/configs/demo) plus SD 1.5's scheduler."""
    configs = {
        name: read_json_config(DEMO_CONFIG_DIR / f"{name}_config.json")
        for name in ("unet", "vae", "text_encoder")
    }
    configs["scheduler"] = read_json_config(SD15_CONFIG_DIR / "scheduler_config.json")
    return configs


def build_demo_components() -> SDComponents:
    """Same weights, bit for bit, on every call; the caller's global RNG state is left untouched."""
    configs = demo_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
    return SDComponents(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=shipped_tokenizer(),
        scheduler=scheduler_from_config(configs["scheduler"]),
    )
