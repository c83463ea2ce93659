"""Test helper: tiny SD 2.x models written as A1111-style single files in the original SD 2 layout.

The text tower is written in open_clip's names, as stabilityai's v2-1 files hold it:
    cond_stage_model.model.token_embedding.weight / positional_embedding / ln_final.* / text_projection /
    logit_scale, cond_stage_model.model.transformer.resblocks.N.{ln_1, attn.in_proj_weight (q, k, v stacked),
    attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}
with one block more than the CLIPTextModel it comes from, as SD 2 files carry OpenCLIP's last block that SD 2
never reads (it uses the penultimate layer); the loader must drop it. The UNet and VAE use tests/ldm_export.py.

`behaviour="v"` / `"eps"` makes the UNet's output constant (conv_out zero, bias -2 or 0), so A1111's v test
(mean of output - input at t=999 below -1) answers v or epsilon from the weights themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from ldm_export import save_state_dict, unet_to_ldm, vae_to_ldm
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.models.checkpoint_loader import CONFIGS_DIR, read_json_config, scheduler_from_config, shipped_tokenizer
from pipelines.models.components import SDComponents
from pipelines.models.families import ModelFamily

TOWER = "cond_stage_model.model."
TEXT_WIDTH = 32
TEXT_CONFIG = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": TEXT_WIDTH, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1,
    "projection_dim": 16, "vocab_size": 49408,
}
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [2, 4],
    "block_out_channels": [32, 64], "cross_attention_dim": TEXT_WIDTH,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
    "sample_size": 64, "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}
_LAYER_NAMES = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                "self_attn.out_proj": "attn.out_proj"}


def build_tiny_sd2(in_channels: int = 4, seed: int = 3, behaviour: str | None = None) -> SDComponents:
    """A tiny SD 2.x model (random weights; `behaviour` see the module doc)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config({**UNET_CONFIG, "in_channels": in_channels}).eval()
        vae = AutoencoderKL.from_config(read_json_config(CONFIGS_DIR / "demo" / "vae_config.json")).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(TEXT_CONFIG)).eval()
    if behaviour is not None:
        with torch.no_grad():
            unet.conv_out.weight.zero_()
            unet.conv_out.bias.fill_(-2.0 if behaviour == "v" else 0.0)
    scheduler = scheduler_from_config(read_json_config(CONFIGS_DIR / "sd2" / "scheduler_base_config.json"))
    return SDComponents(unet, vae, text_encoder, shipped_tokenizer("!"), scheduler, family=ModelFamily.SD2)


def open_clip_tower(text_encoder, extra_block_seed: int = 7) -> dict[str, torch.Tensor]:
    """The text encoder in open_clip's layout, plus one more block (OpenCLIP's last, which SD 2 never reads)."""
    state = {k.removeprefix("text_model."): v.detach().clone() for k, v in text_encoder.state_dict().items()}
    result = {
        TOWER + "token_embedding.weight": state["embeddings.token_embedding.weight"],
        TOWER + "positional_embedding": state["embeddings.position_embedding.weight"],
        TOWER + "ln_final.weight": state["final_layer_norm.weight"],
        TOWER + "ln_final.bias": state["final_layer_norm.bias"],
        TOWER + "logit_scale": torch.tensor(4.6052),
    }
    layers = text_encoder.config.num_hidden_layers
    for i in range(layers):
        base, out = f"encoder.layers.{i}.", f"{TOWER}transformer.resblocks.{i}."
        for leaf in ("weight", "bias"):
            result[out + f"attn.in_proj_{leaf}"] = torch.cat(
                [state[base + f"self_attn.{p}_proj.{leaf}"] for p in ("q", "k", "v")])
            for ours, theirs in _LAYER_NAMES.items():
                result[out + f"{theirs}.{leaf}"] = state[base + f"{ours}.{leaf}"]
    generator = torch.Generator().manual_seed(extra_block_seed)
    for key in [k for k in result if k.startswith(f"{TOWER}transformer.resblocks.0.")]:
        extra = key.replace("resblocks.0.", f"resblocks.{layers}.")
        result[extra] = torch.randn(result[key].shape, generator=generator)
    width = text_encoder.config.hidden_size
    result[TOWER + "text_projection"] = torch.randn((width, text_encoder.config.projection_dim), generator=generator)
    return result


def sd2_state_dict(components, *, markers: tuple[str, ...] = (), half: bool = False) -> dict[str, torch.Tensor]:
    state = {**unet_to_ldm(components.unet), **vae_to_ldm(components.vae), **open_clip_tower(components.text_encoder)}
    for marker in markers:  # "v_pred", "ztsnr": empty tensors, as the fine-tunes ship them
        state[marker] = torch.tensor([])
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state


def write_sd2_checkpoint(components, path: Path, *, markers: tuple[str, ...] = (), half: bool = False,
                         yaml_text: str | None = None) -> Path:
    """The single file, its <stem>.json sidecar (the tiny configs) and, if given, a <stem>.yaml beside it."""
    path = save_state_dict(sd2_state_dict(components, markers=markers, half=half), path)
    configs = {"unet": json.loads(components.unet.to_json_string()),
               "vae": json.loads(components.vae.to_json_string()),
               "text_encoder": json.loads(components.text_encoder.config.to_json_string())}
    path.with_suffix(".json").write_text(json.dumps(configs, indent=1))
    if yaml_text is not None:
        path.with_suffix(".yaml").write_text(yaml_text)
    return path


def a1111_yaml(parameterization: str = "v", in_channels: int = 4, layer: str = "penultimate") -> str:
    """The parts of A1111's v2-inference(-v).yaml the loader reads."""
    return f"""model:
  base_learning_rate: 1.0e-4
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "{parameterization}"
    linear_start: 0.00085
    linear_end: 0.0120
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: {in_channels}
        out_channels: 4
        use_linear_in_transformer: True
        context_dim: {TEXT_WIDTH}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "{layer}"
"""
