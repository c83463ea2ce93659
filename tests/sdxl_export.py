"""Test helper: a tiny SDXL model built from config, written as an original-layout (sgm) single file.

Layout written (the inverse of diffusers' single-file conversion, as ldm_export does for SD 1.x):
    model.diffusion_model.*                  UNet, with label_emb.0.{0,2} (diffusers' add_embedding)
    first_stage_model.*                      VAE (LDM names)
    conditioner.embedders.0.transformer.text_model.*   CLIP ViT-L (transformers' names)
    conditioner.embedders.1.model.*          OpenCLIP bigG (open_clip names: resblocks, fused in_proj,
                                             text_projection stored transposed, positional_embedding)
plus a sidecar <stem>.json with the tiny configs (unet, vae, text_encoder, text_encoder_2).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from ldm_export import _unet_key, clip_to_ldm, save_state_dict, vae_to_ldm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from pipelines.models.checkpoint_loader import scheduler_from_config, shipped_tokenizer
from pipelines.models.components import SDComponents
from pipelines.models.demo_model import demo_configs
from pipelines.models.families import ModelFamily
from pipelines.models.sdxl_loader import BIGG_PREFIX, CLIP_L_PREFIX, sdxl_configs

UNET_PREFIX = "model.diffusion_model."
TIME_EMBED_DIM = 8  # addition_time_embed_dim: each of the 6 size numbers becomes 8 features
TEXT_WIDTH = 32  # both tiny encoders; cross-attention = 32 + 32, pooled = 32


def tiny_unet_config(in_channels: int = 4) -> dict:
    return {
        "_class_name": "UNet2DConditionModel", "block_out_channels": [32, 64], "layers_per_block": 1,
        "sample_size": 32, "in_channels": in_channels, "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [2, 4], "use_linear_projection": True, "addition_embed_type": "text_time",
        "addition_time_embed_dim": TIME_EMBED_DIM, "transformer_layers_per_block": [1, 2],
        "projection_class_embeddings_input_dim": 6 * TIME_EMBED_DIM + TEXT_WIDTH,
        "cross_attention_dim": 2 * TEXT_WIDTH, "norm_num_groups": 16,
    }


def tiny_text_config(act: str) -> dict:
    return {
        "bos_token_id": 0, "eos_token_id": 2, "hidden_size": TEXT_WIDTH, "intermediate_size": 37,
        "layer_norm_eps": 1e-05, "num_attention_heads": 4, "num_hidden_layers": 3, "pad_token_id": 1,
        "vocab_size": 49408, "hidden_act": act, "projection_dim": TEXT_WIDTH, "max_position_embeddings": 77,
    }


def build_tiny_sdxl(seed: int = 0, in_channels: int = 4) -> SDComponents:
    """A tiny SDXL-architecture model with random weights (fixed seed)."""
    from diffusers import AutoencoderKL  # noqa: PLC0415

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(tiny_unet_config(in_channels))
        vae = AutoencoderKL.from_config({**demo_configs()["vae"], "scaling_factor": 0.13025})
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(tiny_text_config("quick_gelu")))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(tiny_text_config("gelu")))
    return SDComponents(
        unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=shipped_tokenizer(),
        scheduler=scheduler_from_config(sdxl_configs()["scheduler"]), family=ModelFamily.SDXL,
        text_encoder_2=text_encoder_2.eval(), tokenizer_2=shipped_tokenizer("!"),
    )


def sdxl_unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    config = unet.config
    up_has_attention = ["CrossAttn" in name for name in config.up_block_types]
    result = {}
    for key, tensor in unet.state_dict().items():
        if key.startswith("add_embedding."):  # linear_1 / linear_2 -> label_emb.0.0 / label_emb.0.2
            module, leaf = key.removeprefix("add_embedding.").split(".")
            ldm = f"label_emb.0.{0 if module == 'linear_1' else 2}.{leaf}"
        else:
            ldm = _unet_key(key, config.layers_per_block, up_has_attention)
        result[UNET_PREFIX + ldm] = tensor.detach().clone()
    return result


def open_clip_to_ldm(text_encoder_2, prefix: str = BIGG_PREFIX) -> dict[str, torch.Tensor]:
    """transformers' CLIPTextModelWithProjection -> open_clip keys (what SDXL files store)."""
    state = {k.removeprefix("text_model."): v.detach().clone() for k, v in text_encoder_2.state_dict().items()
             if not k.endswith("position_ids")}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
        prefix + "logit_scale": torch.tensor(4.6052),  # real files carry it; the loader drops it
    }
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for layer in range(text_encoder_2.config.num_hidden_layers):
        source, target = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for leaf in ("weight", "bias"):
            out[target + f"attn.in_proj_{leaf}"] = torch.cat(
                [state.pop(source + f"self_attn.{p}_proj.{leaf}") for p in "qkv"])
            for old, new in names.items():
                out[target + f"{new}.{leaf}"] = state.pop(source + f"{old}.{leaf}")
    assert not state, f"unconverted keys: {sorted(state)}"
    return out


def sdxl_state_dict(components: SDComponents, *, half: bool = False) -> dict[str, torch.Tensor]:
    clip_l = {CLIP_L_PREFIX + k.removeprefix("cond_stage_model.transformer."): v
              for k, v in clip_to_ldm(components.text_encoder).items()}
    state = {**sdxl_unet_to_ldm(components.unet), **vae_to_ldm(components.vae), **clip_l,
             **open_clip_to_ldm(components.text_encoder_2)}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state


def write_sdxl_checkpoint(components: SDComponents, path: Path, *, half: bool = False, v_pred: bool = False,
                          ztsnr: bool = False, sidecar: bool = True) -> Path:
    """The single file (format by suffix) and, unless sidecar=False, <stem>.json with the tiny configs."""
    state = sdxl_state_dict(components, half=half)
    if v_pred:
        state["v_pred"] = torch.tensor([])
    if ztsnr:
        state["ztsnr"] = torch.tensor([])
    path = save_state_dict(state, path)
    if sidecar:
        configs = {
            "unet": json.loads(components.unet.to_json_string()),
            "vae": json.loads(components.vae.to_json_string()),
            "text_encoder": json.loads(components.text_encoder.config.to_json_string()),
            "text_encoder_2": json.loads(components.text_encoder_2.config.to_json_string()),
        }
        Path(path).with_suffix(".json").write_text(json.dumps(configs, indent=1))
    return path


def write_tiny_sdxl(path: Path, *, seed: int = 0, in_channels: int = 4, **kwargs) -> SDComponents:
    components = build_tiny_sdxl(seed, in_channels)
    write_sdxl_checkpoint(components, path, **kwargs)
    return components


def write_tiny_sdxl_lora(path: Path, seed: int = 0) -> Path:
    """A kohya SDXL LoRA for the tiny model: sgm UNet layer names, lora_te1_ / lora_te2_ for the two encoders."""
    from safetensors.torch import save_file  # noqa: PLC0415

    generator = torch.Generator().manual_seed(seed)
    layers = ["lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q",
              "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_out_0"]
    for encoder in ("te1", "te2"):
        layers += [f"lora_{encoder}_text_model_encoder_layers_0_self_attn_{p}" for p in ("q_proj", "out_proj")]
    state = {}
    for layer in layers:
        dim = 64 if layer.startswith("lora_unet") else TEXT_WIDTH
        state[f"{layer}.lora_down.weight"] = torch.randn(4, dim, generator=generator)
        state[f"{layer}.lora_up.weight"] = torch.randn(dim, 4, generator=generator)
        state[f"{layer}.alpha"] = torch.tensor(4.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    return path
