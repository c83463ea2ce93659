"""LoRA and textual-inversion files in the formats model sites ship, made for the tiny demo model (never
downloaded).

- kohya / A1111 LoRA (.safetensors): `lora_unet_<module path with _>` and `lora_te_text_model_<...>` layers,
  each `.lora_down.weight` (rank, in[, 1, 1]), `.lora_up.weight` (out, rank[, 1, 1]) and `.alpha`, plus
  kohya's `ss_*` metadata.
- A1111 textual inversion (.pt): {"string_to_token": {"*": 265}, "string_to_param": {"*": (n, dim)}, "name",
  "step", "sd_checkpoint", "sd_checkpoint_name"}; diffusers' (.bin): {"<token>": (dim,)}; A1111's
  .safetensors: {"emb_params": (n, dim)}.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from pipelines.models.demo_model import build_demo_components

_COMPONENTS = None


def demo_modules():
    """(unet, text_encoder) of the demo model, built once per test session (read-only here)."""
    global _COMPONENTS
    if _COMPONENTS is None:
        _COMPONENTS = build_demo_components()
    return _COMPONENTS.unet, _COMPONENTS.text_encoder


def kohya_layers(unet=True, text_encoder=True) -> dict[str, torch.nn.Module]:
    """kohya's layer name -> module for the layers a kohya LoRA trains: the attention blocks' linear and
    1x1-conv layers of the UNet, the text encoder's attention and MLP linears."""
    unet_module, te_module = demo_modules()
    layers: dict[str, torch.nn.Module] = {}
    if unet:
        for name, module in unet_module.named_modules():
            if "attentions" in name and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                layers["lora_unet_" + name.replace(".", "_")] = module
    if text_encoder:
        for name, module in te_module.named_modules():
            if "encoder.layers" in name and isinstance(module, torch.nn.Linear):
                flat = name.replace(".", "_")
                layers["lora_te_" + (flat if flat.startswith("text_model_") else "text_model_" + flat)] = module
    return layers


def kohya_state_dict(seed: int = 1, rank: int = 4, alpha: float = 2.0, scale: float = 0.2, unet=True,
                     text_encoder=True) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for layer, module in kohya_layers(unet, text_encoder).items():
        if isinstance(module, torch.nn.Linear):
            down_shape, up_shape = (rank, module.in_features), (module.out_features, rank)
        else:
            down_shape, up_shape = (rank, module.in_channels, 1, 1), (module.out_channels, rank, 1, 1)
        state[f"{layer}.lora_down.weight"] = torch.randn(down_shape, generator=generator) * scale
        state[f"{layer}.lora_up.weight"] = torch.randn(up_shape, generator=generator) * scale
        state[f"{layer}.alpha"] = torch.tensor(alpha)
    return state


def write_kohya_lora(path: Path, seed: int = 1, output_name: str | None = None, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1",
                "ss_output_name": output_name or path.stem}
    save_file(kohya_state_dict(seed, **options), str(path), metadata=metadata)
    return path


def write_sdxl_lora(path: Path) -> Path:
    """A kohya SDXL LoRA: sgm UNet names and two text encoders (lora_te1_ / lora_te2_)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for layer, dim in (("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", 640),
                       ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768),
                       ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280)):
        state[f"{layer}.lora_down.weight"] = torch.zeros(4, dim)
        state[f"{layer}.lora_up.weight"] = torch.zeros(dim, 4)
        state[f"{layer}.alpha"] = torch.tensor(4.0)
    save_file(state, str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    return path


def write_sd2_like_lora(path: Path) -> Path:
    """Layer names the demo model has, shapes it has not (as an SD 2.x LoRA on an SD 1.x model)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = next(name for name in kohya_layers(unet=False) if name.endswith("q_proj"))
    state = {f"{layer}.lora_down.weight": torch.zeros(4, 1024), f"{layer}.lora_up.weight": torch.zeros(1024, 4),
             f"{layer}.alpha": torch.tensor(4.0)}
    save_file(state, str(path))
    return path


def text_embedding_dim() -> int:
    return demo_modules()[1].get_input_embeddings().weight.shape[1]


def embedding_vectors(count: int, seed: int = 3, dim: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, dim or text_embedding_dim(), generator=generator)


def write_a1111_embedding(path: Path, vectors: torch.Tensor, step: int = 500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": path.stem,
                "step": step, "sd_checkpoint": "abcdef1234", "sd_checkpoint_name": "tiny"}, path)
    return path


def write_diffusers_embedding(path: Path, vector: torch.Tensor, token: str = "<concept>") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({token: vector}, path)
    return path


def write_safetensors_embedding(path: Path, vectors: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": vectors.contiguous()}, str(path))
    return path
