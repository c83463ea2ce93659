"""Test helper: write SDComponents as an A1111-style single-file checkpoint (original LDM key layout).

This is the inverse of diffusers' single-file conversion (the mapping of diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py, written out here for any block layout), so
tests can load "a user's file" through exactly the code path real checkpoints take. The tests check it
by running diffusers' forward conversion on its output and getting the original state dicts back.

Layout written:
    model.diffusion_model.*              UNet (input_blocks / middle_block / output_blocks)
    first_stage_model.*                  VAE (encoder.down.N.block.M..., 1x1-conv attention weights)
    cond_stage_model.transformer.text_model.*   CLIP text encoder (+ embeddings.position_ids)
optionally with fake EMA copies (model_ema.<key without dots>), fp16 tensors, LDM schedule buffers, and a
sidecar <stem>.json holding the components' configs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {"conv_norm_out": "norm_out"}


def _unet_key(key: str, layers: int, up_has_attention: list[bool]) -> str:
    parts = key.split(".")
    kind, rest = parts[0], parts[2:]
    if kind in ("down_blocks", "up_blocks"):
        i = int(parts[1])
        sub, j, tail = rest[0], int(rest[1]), ".".join(rest[2:])
        if kind == "down_blocks":
            if sub == "downsamplers":  # down_blocks.i.downsamplers.0.conv.X
                return f"input_blocks.{(i + 1) * (layers + 1)}.0.op.{'.'.join(rest[3:])}"
            block = 1 + i * (layers + 1) + j
        else:
            if sub == "upsamplers":  # after the block's last resnet (and its attention, if any)
                slot = 2 if up_has_attention[i] else 1
                return f"output_blocks.{i * (layers + 1) + layers}.{slot}.conv.{'.'.join(rest[3:])}"
            block = i * (layers + 1) + j
        name = "input_blocks" if kind == "down_blocks" else "output_blocks"
        if sub == "resnets":
            return f"{name}.{block}.0.{_resnet_tail(tail)}"
        return f"{name}.{block}.1.{tail}"
    if kind == "mid_block":  # no block index: mid_block.resnets.j.X / mid_block.attentions.0.X
        sub, j, tail = parts[1], int(parts[2]), ".".join(parts[3:])
        if sub == "resnets":
            return f"middle_block.{2 * j}.{_resnet_tail(tail)}"
        return f"middle_block.1.{tail}"
    module, leaf = key.rsplit(".", 1)
    return f"{_UNET_TOP[module]}.{leaf}"


def _resnet_tail(tail: str) -> str:
    module, leaf = tail.split(".", 1)
    return f"{_UNET_RESNET[module]}.{leaf}"


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """model.diffusion_model.* keys for a diffusers UNet2DConditionModel."""
    config = unet.config
    up_has_attention = ["CrossAttn" in name for name in config.up_block_types]
    return {
        UNET_PREFIX + _unet_key(k, config.layers_per_block, up_has_attention): v.detach().clone()
        for k, v in unet.state_dict().items()
    }


def _vae_key(key: str, num_levels: int) -> str:
    coder, rest = key.split(".", 1)
    parts = rest.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        i = int(parts[1])
        level = i if parts[0] == "down_blocks" else num_levels - 1 - i  # LDM numbers decoder levels upward
        name = "down" if parts[0] == "down_blocks" else "up"
        if parts[2] in ("downsamplers", "upsamplers"):
            sampler = "downsample" if parts[2] == "downsamplers" else "upsample"
            return f"{coder}.{name}.{level}.{sampler}.{'.'.join(parts[4:])}"
        tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.{name}.{level}.block.{parts[3]}.{tail}"
    if parts[0] == "mid_block":
        tail = ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"{coder}.mid.block_{int(parts[2]) + 1}.{tail.replace('conv_shortcut', 'nin_shortcut')}"
        module, leaf = tail.rsplit(".", 1)
        return f"{coder}.mid.attn_1.{_VAE_ATTENTION[module]}.{leaf}"
    module, leaf = rest.rsplit(".", 1)
    return f"{coder}.{_VAE_TOP.get(module, module)}.{leaf}"


def vae_to_ldm(vae, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """LDM VAE keys; attention projections become 1x1 convs as in the original files."""
    num_levels = len(vae.config.block_out_channels)
    result = {}
    for key, tensor in vae.state_dict().items():
        if key.startswith(("quant_conv", "post_quant_conv")):
            ldm_key = key
        else:
            ldm_key = _vae_key(key, num_levels)
        tensor = tensor.detach().clone()
        if ".mid.attn_1." in ldm_key and ldm_key.endswith("weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        result[prefix + ldm_key] = tensor
    return result


def clip_to_ldm(text_encoder, broken_position_ids: bool = False) -> dict[str, torch.Tensor]:
    """cond_stage_model.transformer.text_model.* keys, with the position_ids buffer real files carry."""
    result = {
        CLIP_PREFIX + k.removeprefix("text_model."): v.detach().clone()
        for k, v in text_encoder.state_dict().items()
        if not k.endswith("position_ids")
    }
    count = text_encoder.config.max_position_embeddings
    ids = torch.arange(count).unsqueeze(0)
    if broken_position_ids:  # merged models often carry float ids like 76.9999 (A1111 repairs them)
        ids = ids.float() - 1e-4
    result[CLIP_PREFIX + "embeddings.position_ids"] = ids
    return result


def ldm_state_dict(
    components, *, half: bool = False, ema: bool = False, broken_position_ids: bool = False
) -> dict[str, torch.Tensor]:
    """The full single-file state dict of `components`."""
    state = {
        **unet_to_ldm(components.unet),
        **vae_to_ldm(components.vae),
        **clip_to_ldm(components.text_encoder, broken_position_ids),
    }
    # Schedule buffers real LDM files carry; loaders must ignore them.
    state["betas"] = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    state["alphas_cumprod"] = torch.cumprod(1 - state["betas"], 0)
    if ema:
        for key in [k for k in state if k.startswith(UNET_PREFIX)]:
            # +1 so a test can tell which copy was loaded
            state["model_ema." + key.removeprefix("model.").replace(".", "")] = state[key] + 1
        state["model_ema.decay"] = torch.tensor(0.9999)
        state["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state


def sidecar_configs(components) -> dict[str, dict]:
    configs = {}
    if getattr(components, "unet", None) is not None:
        configs["unet"] = json.loads(components.unet.to_json_string())
    if getattr(components, "vae", None) is not None:
        configs["vae"] = json.loads(components.vae.to_json_string())
    if getattr(components, "text_encoder", None) is not None:
        configs["text_encoder"] = json.loads(components.text_encoder.config.to_json_string())
    return configs


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> Path:
    """.safetensors via safetensors; anything else via torch.save({"state_dict": ...}) like LDM."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 1000}, path)
    return path


def write_checkpoint(
    components,
    path: Path,
    *,
    half: bool = False,
    ema: bool = False,
    broken_position_ids: bool = False,
    sidecar: bool = True,
) -> Path:
    """Writes the checkpoint (format by suffix) and, unless sidecar=False, <stem>.json beside it."""
    state = ldm_state_dict(components, half=half, ema=ema, broken_position_ids=broken_position_ids)
    path = save_state_dict(state, path)
    if sidecar:
        write_sidecar(components, path)
    return path


def write_sidecar(components, path: Path, parts: tuple[str, ...] = ("unet", "vae", "text_encoder")) -> Path:
    """<stem>.json beside `path` with the given components' configs."""
    configs = sidecar_configs(components)
    sidecar = Path(path).with_suffix(".json")
    sidecar.write_text(json.dumps({part: configs[part] for part in parts}, indent=1))
    return sidecar


def write_vae(vae, path: Path, *, prefix: str = "", sidecar: bool = True) -> Path:
    """A standalone LDM-layout VAE file (keys encoder.*/decoder.*, optionally first_stage_model.-prefixed)."""
    path = save_state_dict(vae_to_ldm(vae, prefix=prefix), path)
    if sidecar:
        write_vae_sidecar(vae, path)
    return path


def write_vae_sidecar(vae, path: Path) -> Path:
    sidecar = Path(path).with_suffix(".json")
    sidecar.write_text(json.dumps({"vae": json.loads(vae.to_json_string())}, indent=1))
    return sidecar


def write_demo_variant(paths, *, in_channels: int = 4, block_out_channels=None, seed: int = 1):
    """The demo model with another UNet (9 input channels for an inpainting model, wider blocks for a model of
    realistic size), written as LDM-layout checkpoints to each of `paths`; returns its components."""
    from diffusers import UNet2DConditionModel  # noqa: PLC0415

    from pipelines.models.components import SDComponents  # noqa: PLC0415
    from pipelines.models.demo_model import build_demo_components  # noqa: PLC0415

    demo = build_demo_components()
    config = dict(demo.unet.config) | {"in_channels": in_channels}
    if block_out_channels is not None:
        config["block_out_channels"] = list(block_out_channels)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(config)
    components = SDComponents(unet, demo.vae, demo.text_encoder, demo.tokenizer, demo.scheduler)
    for path in paths:
        write_checkpoint(components, Path(path))
    return components
