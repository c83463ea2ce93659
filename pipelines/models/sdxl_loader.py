"""Offline loading of SDXL checkpoints (base, fine-tunes, 9-channel inpainting) into SDComponents.

A single file in the original (sgm) layout holds
    conditioner.embedders.0.transformer.*   CLIP ViT-L/14 (transformers' names)   -> text_encoder
    conditioner.embedders.1.model.*         OpenCLIP ViT-bigG/14 (open_clip names) -> text_encoder_2
    model.diffusion_model.*                 the UNet, with label_emb (pooled text + size embedding)
    first_stage_model.*                     the VAE
and is loaded with checkpoint_loader's steps: detect from the keys, convert with diffusers' own converters,
build on the meta device from the shipped configs (models/configs/sdxl, the published
stabilityai/stable-diffusion-xl-base-1.0 ones) and assign. A ``<stem>.json`` sidecar may replace any of
"unet", "vae", "text_encoder", "text_encoder_2" (complete config dicts) and amend "scheduler" (keys merged),
which is how tests load tiny SDXL models.

v-prediction fine-tunes (NoobAI-v, some Illustrious) mark themselves with an empty ``v_pred`` tensor, and
zero-terminal-SNR ones with ``ztsnr`` (the convention ComfyUI and A1111 read); both reach the scheduler config.
The SDXL refiner (OpenCLIP bigG only, aesthetic-score conditioning) is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from pipelines.models.checkpoint_files import CheckpointError
from pipelines.models.checkpoint_loader import (
    CONFIGS_DIR,
    EMA_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    _select_ema,
    _weights_variant,
    assign_weights,
    build_text_encoder,
    build_unet,
    build_vae,
    read_json_config,
    scheduler_from_config,
    shipped_tokenizer,
)
from pipelines.models.components import SDComponents
from pipelines.models.families import ModelFamily
from pipelines.models.parameterization import apply_prediction, is_zero_snr, marker_keys, read_yaml_config

SDXL_CONFIG_DIR = CONFIGS_DIR / "sdxl"
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
BIGG_PREFIX = "conditioner.embedders.1.model."
REFINER_BIGG_PREFIX = "conditioner.embedders.0.model."  # the refiner has only the bigG encoder
SDXL_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")
OPENCLIP_PAD_TOKEN = "!"  # open_clip pads with id 0, which is "!" in the CLIP BPE vocabulary


def is_sdxl_state_dict(state_dict: dict[str, Any]) -> bool:
    return any(k.startswith("conditioner.embedders.") for k in state_dict)


def check_sdxl_layout(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Raises CheckpointError unless every part of an SDXL base-architecture model is in the file."""
    keys = list(state_dict)
    if any(k.startswith(REFINER_BIGG_PREFIX) for k in keys):
        raise CheckpointError(
            f"{path}: an SDXL refiner checkpoint (one OpenCLIP bigG text encoder, aesthetic-score conditioning) "
            "is not supported; use an SDXL base model or a fine-tune of it."
        )
    parts = ((UNET_PREFIX, "UNet"), (VAE_PREFIX, "VAE"), (CLIP_L_PREFIX, "CLIP ViT-L text encoder"),
             (BIGG_PREFIX, "OpenCLIP bigG text encoder"))
    for prefix, part in parts:
        if not any(k.startswith(prefix) for k in keys):
            raise CheckpointError(
                f"{path}: incomplete SDXL checkpoint: no {part} weights ({prefix}*). Use a full checkpoint, "
                "not a UNet-only extract."
            )
    if UNET_PREFIX + "label_emb.0.0.weight" not in state_dict:
        raise CheckpointError(f"{path}: SDXL text encoders but a UNet without the size/pooled embedding "
                              f"({UNET_PREFIX}label_emb.*): not an SDXL model.")


# -- configs ---------------------------------------------------------------------------------------------


def sdxl_configs(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The shipped SDXL configs, with a ``<stem>.json`` sidecar's parts replacing them (scheduler: merged)."""
    configs = {name: read_json_config(SDXL_CONFIG_DIR / f"{name}_config.json") for name in
               (*SDXL_PARTS, "scheduler")}
    sidecar = Path(path).with_suffix(".json") if path is not None else None
    if sidecar is None or not sidecar.is_file():
        return configs
    try:
        data = read_json_config(sidecar)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{sidecar}: sidecar config is not valid JSON ({error}); fix or remove it.") from None
    if not isinstance(data, dict):
        return configs
    for name in SDXL_PARTS:
        if isinstance(data.get(name), dict):  # A1111's metadata JSON stores a VAE *name* under "vae"
            configs[name] = data[name]
    if isinstance(data.get("scheduler"), dict):
        configs["scheduler"] = {**configs["scheduler"], **data["scheduler"]}
    return configs


def scheduler_config_for(path: Path, state_dict: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The scheduler config with what the file says about its prediction applied: the ``v_pred`` / ``ztsnr``
    marker keys, a sidecar "scheduler" prediction_type, and an A1111 ``<stem>.yaml`` (which wins, as in A1111)."""
    v_pred, ztsnr = marker_keys(state_dict)
    v_pred = v_pred or config.get("prediction_type") == "v_prediction"
    yaml_config = read_yaml_config(path)
    if yaml_config is not None and yaml_config.v_prediction is not None:
        v_pred = yaml_config.v_prediction
    zero_snr = ztsnr or is_zero_snr(config)
    plain = {k: v for k, v in config.items() if k != "rescale_betas_zero_snr"}  # trained_betas carry it instead
    return apply_prediction(plain, v_pred, zero_snr)


# -- the second text encoder ------------------------------------------------------------------------------


def build_text_encoder_2(state_dict: dict, config: dict, path: Path, dtype: torch.dtype,
                         prefix: str = BIGG_PREFIX) -> CLIPTextModelWithProjection:
    """OpenCLIP bigG (open_clip names, fused in_proj attention) -> transformers' CLIPTextModelWithProjection."""
    with init_empty_weights():
        model = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(config))
    expected = model.state_dict()
    wants_text_model = any(k.startswith("text_model.") for k in expected)
    try:
        converted = convert_open_clip_checkpoint(model, state_dict, prefix=prefix)
    except (KeyError, IndexError, AttributeError, TypeError) as error:
        raise CheckpointError(f"{path}: the OpenCLIP text encoder is not in the SDXL layout ({error!r}).") from None
    result = {}
    for key, tensor in converted.items():
        bare = key.removeprefix("text_model.")
        is_top = key.startswith("text_projection")
        result[key if is_top or not wants_text_model else f"text_model.{bare}"] = tensor
    for key in [k for k in expected if k.endswith("embeddings.position_ids")]:
        result[key] = torch.arange(expected[key].shape[-1]).unsqueeze(0)
    return assign_weights(model, result, path, "OpenCLIP text encoder", dtype)


# -- single file -------------------------------------------------------------------------------------------


def load_sdxl_single_file(path: Path, state_dict: dict[str, torch.Tensor], dtype: torch.dtype,
                          vae_dtype: torch.dtype, use_ema: bool = False) -> SDComponents:
    check_sdxl_layout(state_dict, path)
    configs = sdxl_configs(path)
    scheduler_config = scheduler_config_for(path, state_dict, configs["scheduler"])
    if use_ema:
        _select_ema(state_dict, path)
    keep = (UNET_PREFIX, VAE_PREFIX, CLIP_L_PREFIX, BIGG_PREFIX)
    state_dict = {k: v for k, v in state_dict.items() if k.startswith(keep) and not k.startswith(EMA_PREFIX)}
    for key, tensor in state_dict.items():  # cast entry by entry: the file's copy is freed as we go
        target = vae_dtype if key.startswith(VAE_PREFIX) else dtype
        if tensor.is_floating_point() and tensor.dtype != target:
            state_dict[key] = tensor.to(target)
    unet = build_unet(state_dict, configs["unet"], path, dtype)
    vae = build_vae(state_dict, configs["vae"], path, vae_dtype)
    text_encoder = build_text_encoder(state_dict, configs["text_encoder"], path, dtype)
    text_encoder_2 = build_text_encoder_2(state_dict, configs["text_encoder_2"], path, dtype)
    tokenizer_2 = shipped_tokenizer(OPENCLIP_PAD_TOKEN)
    pool_at_first_end_token(text_encoder_2, tokenizer_2)
    return SDComponents(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=shipped_tokenizer(),
        scheduler=scheduler_from_config(scheduler_config), family=ModelFamily.SDXL,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
    )


# -- diffusers folders ----------------------------------------------------------------------------------------


def is_sdxl_folder(index: dict[str, Any]) -> bool:
    return "XL" in str(index.get("_class_name", "")) or "text_encoder_2" in index


def load_sdxl_diffusers_folder(folder: Path, index: dict[str, Any], dtype: torch.dtype,
                               vae_dtype: torch.dtype) -> SDComponents:
    """A StableDiffusionXL(Inpaint)Pipeline folder (model_index.json), each part from_pretrained offline."""
    for part in SDXL_PARTS:
        if not (folder / part / "config.json").is_file():
            kind = "an SDXL refiner (not supported)" if part == "text_encoder" else "incomplete"
            raise CheckpointError(f"{folder}: {index.get('_class_name', 'SDXL')} folder is {kind}: "
                                  f"no {part}/config.json.")
    model_files = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    text_files = ("model.safetensors", "pytorch_model.bin")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True,
                                                    torch_dtype=dtype, **_weights_variant(folder / "unet", model_files))
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True, torch_dtype=vae_dtype,
                                            **_weights_variant(folder / "vae", model_files))
        text_encoder = CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", local_files_only=True,
            **_weights_variant(folder / "text_encoder", text_files)).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
            folder, subfolder="text_encoder_2", local_files_only=True,
            **_weights_variant(folder / "text_encoder_2", text_files)).to(dtype)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: cannot load this SDXL diffusers model: {error}") from None
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = read_json_config(scheduler_file) if scheduler_file.is_file() else sdxl_configs()["scheduler"]
    tokenizer_2 = _folder_tokenizer(folder, "tokenizer_2", OPENCLIP_PAD_TOKEN)
    pool_at_first_end_token(text_encoder_2, tokenizer_2)
    return SDComponents(
        unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(),
        tokenizer=_folder_tokenizer(folder, "tokenizer", None), scheduler=scheduler_from_config(scheduler),
        family=ModelFamily.SDXL, text_encoder_2=text_encoder_2.eval(), tokenizer_2=tokenizer_2,
    )


def pool_at_first_end_token(text_encoder_2: CLIPTextModelWithProjection, tokenizer_2: CLIPTokenizer) -> None:
    """Pool at the first end token, as open_clip's argmax over ids does while every id is in its vocabulary.
    The published config (eos_token_id 2) makes transformers take the argmax too, which an embedding's added
    tokens (ids past the vocabulary) would win; the same position otherwise."""
    text_encoder_2.config.eos_token_id = tokenizer_2.eos_token_id
    text_model = getattr(text_encoder_2, "text_model", text_encoder_2)
    text_model.eos_token_id = tokenizer_2.eos_token_id


def _folder_tokenizer(folder: Path, subfolder: str, pad_token: str | None) -> CLIPTokenizer:
    if (folder / subfolder / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)
    return shipped_tokenizer(pad_token)  # exported folders often omit them; SDXL always uses these two
