"""Offline loading of Stable Diffusion 2.x checkpoints (512-base, 768-v, 9-channel inpainting) into SDComponents.

A single file in the original (LDM) layout holds
    cond_stage_model.model.*    OpenCLIP ViT-H/14 text tower (open_clip names, fused in_proj attention)
    model.diffusion_model.*     the UNet (1024-wide cross-attention, linear transformer projections)
    first_stage_model.*         the VAE (as SD 1.x)
and is loaded with checkpoint_loader's steps: detect, convert, build on the meta device from the shipped configs
(models/configs/sd2: the published stabilityai/stable-diffusion-2-1 ones, "*_base_*" for -base) and assign.

The text encoder: SD 2.x reads OpenCLIP's *penultimate* layer (ldm's FrozenOpenCLIPEmbedder layer="penultimate":
all resblocks but the last, then ln_final). diffusers' SD 2 text encoder is that cut: 23 of the 24 layers, so its
last_hidden_state is exactly what SD 2 was trained on. Blocks past the config's layer count are dropped here;
a ``<stem>.yaml`` saying layer "last" keeps them all.

v-prediction, as A1111 decides it (sd_models_config.guess_model_config_from_state_dict): a ``<stem>.yaml`` beside
the file wins; else a ``v_pred`` marker key; else 9-channel inpainting models are epsilon; else A1111's test: run
the UNet once on a constant input at t=999 - a v model's output sits well below its input
(is_using_v_parameterization_for_sd2). A ``ztsnr`` key asks for the zero-terminal-SNR schedule.
A ``<stem>.json`` sidecar may replace "unet", "vae", "text_encoder" (complete config dicts), as for SD 1.x.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.models.checkpoint_files import CheckpointError
from pipelines.models.checkpoint_loader import (
    CONFIGS_DIR,
    EMA_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    _select_ema,
    assign_weights,
    build_unet,
    build_vae,
    component_configs,
    read_json_config,
    scheduler_from_config,
    shipped_tokenizer,
)
from pipelines.models.components import SDComponents
from pipelines.models.families import ModelFamily
from pipelines.models.parameterization import YamlConfig, apply_prediction, marker_keys, read_yaml_config

log = logging.getLogger(__name__)

SD2_CONFIG_DIR = CONFIGS_DIR / "sd2"
OPEN_CLIP_PREFIX = "cond_stage_model.model."
RESBLOCKS = OPEN_CLIP_PREFIX + "transformer.resblocks."
OPENCLIP_PAD_TOKEN = "!"  # open_clip pads with id 0, which is "!" in the CLIP BPE vocabulary
# A1111's v test: constant 0.5 latents and context at t=999; the mean of (output - input) below -1 means v.
V_TEST_TIMESTEP, V_TEST_VALUE, V_TEST_THRESHOLD = 999, 0.5, -1.0


def is_sd2_state_dict(state_dict: dict[str, Any]) -> bool:
    """SD 2.x: an OpenCLIP text tower under cond_stage_model.model. (SD 1.x: cond_stage_model.transformer.)."""
    return any(k.startswith(OPEN_CLIP_PREFIX) for k in state_dict)


def sd2_configs(path: Path, v_prediction: bool) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The shipped SD 2.1 (v) or 2.1-base (epsilon) configs with a sidecar's parts replacing them, and the
    names of the parts the sidecar gave."""
    variant = "" if v_prediction else "_base"
    shipped = {
        "unet": read_json_config(SD2_CONFIG_DIR / f"unet{variant}_config.json"),
        "vae": read_json_config(SD2_CONFIG_DIR / "vae_config.json"),
        "text_encoder": read_json_config(SD2_CONFIG_DIR / "text_encoder_config.json"),
        "scheduler": read_json_config(SD2_CONFIG_DIR / f"scheduler{variant}_config.json"),
    }
    configs = component_configs(path, base=shipped)
    return configs, {name for name in ("unet", "vae", "text_encoder") if configs[name] is not shipped[name]}


# -- checks against the weights and the yaml ------------------------------------------------------------------


def _unet_facts(state_dict: dict[str, torch.Tensor], path: Path) -> tuple[int, int, bool]:
    """(in_channels, context width, linear transformer projections) as the UNet's weights have them."""
    conv_in = state_dict.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None or conv_in.ndim != 4:
        raise CheckpointError(f"{path}: an SD 2.x file without UNet weights ({UNET_PREFIX}input_blocks.0.0.weight); "
                              "use a full checkpoint, not a text-encoder or UNet extract.")
    context = next((t for k, t in state_dict.items() if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight")),
                   None)
    proj_in = next((t for k, t in state_dict.items() if k.startswith(UNET_PREFIX) and k.endswith(".proj_in.weight")),
                   None)
    if context is None:
        raise CheckpointError(f"{path}: not a Stable Diffusion checkpoint (its UNet has no cross-attention).")
    return int(conv_in.shape[1]), int(context.shape[1]), proj_in is None or proj_in.ndim == 2


def _check_yaml(config: YamlConfig | None, facts: tuple[int, int, bool], path: Path) -> None:
    """A1111 builds the model the yaml describes, so a yaml that contradicts the weights fails to load there; here
    it fails with the value named."""
    if config is None:
        return
    in_channels, context, linear = facts
    said = {"in_channels": (config.in_channels, in_channels), "context_dim": (config.context_dim, context),
            "use_linear_in_transformer": (config.use_linear_in_transformer, linear)}
    for name, (wanted, actual) in said.items():
        if wanted is not None and wanted != actual:
            raise CheckpointError(f"{path}: {config.path.name} says unet_config {name}: {wanted}, but the weights "
                                  f"have {actual}. Fix or remove the .yaml.")


def _check_parts(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    for prefix, kind in (("depth_model.", "depth-to-image (MiDaS)"), ("embedder.", "unCLIP (image variations)")):
        if any(k.startswith(prefix) for k in state_dict):  # A1111 gives these their own configs and conditioning
            raise CheckpointError(f"{path}: an SD 2.x {kind} model ({prefix}* weights) is not supported; use an "
                                  "SD 2.x text-to-image, 768-v or inpainting checkpoint.")
    for prefix, part in ((VAE_PREFIX, "VAE"), (RESBLOCKS, "text encoder")):
        if not any(k.startswith(prefix) for k in state_dict):
            raise CheckpointError(f"{path}: incomplete Stable Diffusion 2.x checkpoint: no {part} weights "
                                  f"({prefix}*). Use a full checkpoint, not a UNet-only extract.")


# -- the OpenCLIP text tower ----------------------------------------------------------------------------------


def _resblock_count(state_dict: dict[str, torch.Tensor]) -> int:
    indices = {int(k[len(RESBLOCKS):].split(".", 1)[0]) for k in state_dict if k.startswith(RESBLOCKS)}
    return max(indices) + 1 if indices else 0


def build_open_clip_text_encoder(state_dict: dict, config: dict, path: Path, dtype: torch.dtype,
                                 layer: str | None = None) -> CLIPTextModel:
    """OpenCLIP ViT-H (open_clip names) -> transformers' CLIPTextModel of the config's layer count (23 for SD 2:
    the penultimate layer), or every block when the yaml asks for layer "last"."""
    available = _resblock_count(state_dict)
    layers = available if layer == "last" else int(config["num_hidden_layers"])
    if available < layers:
        raise CheckpointError(f"{path}: the OpenCLIP text encoder has {available} blocks, {layers} are needed.")
    config = {**config, "num_hidden_layers": layers}
    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig.from_dict(config))
    # Only the blocks SD 2 reads; text_projection is for image-text matching, which SD 2 never uses.
    tower = {k: v for k, v in state_dict.items() if k.startswith(OPEN_CLIP_PREFIX) and not k.endswith(
        "text_projection") and not (k.startswith(RESBLOCKS) and int(k[len(RESBLOCKS):].split(".", 1)[0]) >= layers)}
    try:
        converted = convert_open_clip_checkpoint(model, tower, prefix=OPEN_CLIP_PREFIX)
    except (KeyError, IndexError, AttributeError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: the OpenCLIP text encoder is not in the SD 2.x layout ({error!r}).") from None
    expected = model.state_dict()
    wants_text_model = any(k.startswith("text_model.") for k in expected)  # transformers < 5.6 nests it
    result = {}
    for key, tensor in converted.items():
        bare = key.removeprefix("text_model.")
        result[f"text_model.{bare}" if wants_text_model else bare] = tensor
    for key in [k for k in expected if k.endswith("embeddings.position_ids")]:
        result[key] = torch.arange(expected[key].shape[-1]).unsqueeze(0)
    return assign_weights(model, result, path, "OpenCLIP text encoder", dtype)


# -- v-prediction ----------------------------------------------------------------------------------------------


@torch.no_grad()
def unet_predicts_velocity(unet) -> bool:
    """A1111's is_using_v_parameterization_for_sd2 on the loaded UNet: run it in float32 on constant 0.5 latents
    (8x8) and a constant 0.5 context at t=999. Near pure noise an epsilon model returns about its input; a v model
    returns about minus the clean image, far below it."""
    dtype, device = unet.dtype, unet.device
    # float32 as A1111 (a half-precision round trip is exact); nn.Module's own .to: diffusers' warns on dtypes
    torch.nn.Module.to(unet, torch.float32)
    try:
        x = torch.full((1, unet.config.in_channels, 8, 8), V_TEST_VALUE, device=device)
        context = torch.full((1, 2, unet.config.cross_attention_dim), V_TEST_VALUE, device=device)
        out = unet(x, torch.tensor([V_TEST_TIMESTEP], device=device), encoder_hidden_states=context).sample
        return (out - x).mean().item() < V_TEST_THRESHOLD
    finally:
        torch.nn.Module.to(unet, dtype)


def _upcast_attention(unet) -> None:
    """SD 2.1-v's published config upcasts attention scores to float32 (fp16 overflows in them otherwise)."""
    for module in unet.modules():
        if hasattr(module, "upcast_attention") and hasattr(module, "to_q"):
            module.upcast_attention = True
    unet.register_to_config(upcast_attention=True)


def detect_v_prediction(v_marker: bool, unet, yaml_config: YamlConfig | None) -> tuple[bool, str]:
    """(v-prediction?, why) in A1111's order of trust; v_marker: the file has a v_pred key."""
    if yaml_config is not None and yaml_config.v_prediction is not None:
        return yaml_config.v_prediction, yaml_config.path.name
    if v_marker:
        return True, "v_pred key"
    if unet.config.in_channels != 4:
        return False, "inpainting model"  # A1111: SD 2 inpainting is epsilon (v2-inpainting-inference.yaml)
    return unet_predicts_velocity(unet), "UNet test"


# -- the whole file ---------------------------------------------------------------------------------------------


def load_sd2_single_file(path: Path, state_dict: dict[str, torch.Tensor], dtype: torch.dtype,
                         vae_dtype: torch.dtype, use_ema: bool = False) -> SDComponents:
    yaml_config = read_yaml_config(path)
    facts = _unet_facts(state_dict, path)
    _check_yaml(yaml_config, facts, path)
    _check_parts(state_dict, path)
    v_marker, zero_snr = marker_keys(state_dict)
    if use_ema:
        _select_ema(state_dict, path)
    keep = (UNET_PREFIX, VAE_PREFIX, OPEN_CLIP_PREFIX)
    state_dict = {k: v for k, v in state_dict.items() if k.startswith(keep) and not k.startswith(EMA_PREFIX)}
    for key, tensor in state_dict.items():  # cast entry by entry: the file's copy is freed as we go
        target = vae_dtype if key.startswith(VAE_PREFIX) else dtype
        if tensor.is_floating_point() and tensor.dtype != target:
            state_dict[key] = tensor.to(target)
    configs, from_sidecar = sd2_configs(path, v_prediction=False)
    unet_config = {**configs["unet"], "use_linear_projection": facts[2]}
    unet = build_unet(state_dict, unet_config, path, dtype)
    v_prediction, why = detect_v_prediction(v_marker, unet, yaml_config)
    if v_prediction:
        v_configs, _ = sd2_configs(path, v_prediction=True)
        configs["scheduler"] = v_configs["scheduler"]
        if "unet" not in from_sidecar:
            _upcast_attention(unet)
            unet.register_to_config(sample_size=v_configs["unet"]["sample_size"])
    log.info("%s: SD 2.x, %s (%s)%s", path.name, "v-prediction" if v_prediction else "epsilon", why,
             ", zero terminal SNR" if zero_snr else "")
    vae = build_vae(state_dict, configs["vae"], path, vae_dtype)
    layer = yaml_config.text_layer if yaml_config is not None else None
    text_encoder = build_open_clip_text_encoder(state_dict, configs["text_encoder"], path, dtype, layer)
    return SDComponents(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=shipped_tokenizer(OPENCLIP_PAD_TOKEN),
        scheduler=scheduler_from_config(apply_prediction(configs["scheduler"], v_prediction, zero_snr)),
        family=ModelFamily.SD2,
    )

