"""Offline loading of Stable Diffusion 1.x checkpoints into SDComponents.

A single file (A1111's .safetensors / .ckpt in the original LDM key layout) is loaded in four steps:
  1. read the state dict safely (checkpoint_files.read_state_dict: weights_only=True, nothing else);
  2. detect the architecture from keys and shapes: SDXL (conditioner.embedders.*) goes to sdxl_loader.py,
     which reuses the steps below with its own configs;
  3. convert the LDM keys with diffusers' own converters (diffusers.loaders.single_file_utils);
  4. build each model on the meta device from the shipped configs (models/configs/sd15) and assign the
     converted tensors, so a 4 GB file is not held twice and no time is spent on a random init.
A diffusers folder (a directory with model_index.json) is loaded with from_pretrained per component.

Sidecar configs: if ``<checkpoint stem>.json`` sits beside the file and holds any of the keys "unet",
"vae", "text_encoder" (each a complete diffusers / transformers config dict), those replace the shipped
SD 1.5 configs for that file. This is for SD1-architecture files with non-standard sizes (and is how the
tests load tiny models). A JSON without those keys, such as A1111's user metadata "<stem>.json", is
ignored. load_vae honours the "vae" key of ``<vae stem>.json`` the same way.

The UNet's in_channels always comes from the weights, so 9-channel inpainting models load as such.
EMA weights (``model_ema.*``) are ignored unless use_ema=True, like A1111.
Nothing here touches the network: every from_pretrained passes local_files_only=True.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, PNDMScheduler, SchedulerMixin, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pipelines.models.checkpoint_files import DIFFUSERS_MARKER, CheckpointError, read_state_dict
from pipelines.models.components import SDComponents
from pipelines.models.families import ModelFamily
from pipelines.models.parameterization import explicit_zero_snr

__all__ = ["CheckpointError", "read_state_dict", "load_checkpoint", "load_vae", "component_configs"]

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "models" / "configs"
SD15_CONFIG_DIR = CONFIGS_DIR / "sd15"
TOKENIZER_DIR = CONFIGS_DIR / "clip-tokenizer"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
EMA_PREFIX = "model_ema."
COMPONENT_NAMES = ("unet", "vae", "text_encoder")
SD1_CONTEXT_DIM = 768
SD2_CONTEXT_DIM = 1024
SUPPORTED_UNET_INPUTS = (4, 9)  # latents, or latents + mask + masked-image latents (inpainting)


def _unsupported(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: SD 2.x / SDXL checkpoints are not supported yet ({why}). Use a Stable Diffusion 1.x "
        "checkpoint (e.g. v1-5-pruned-emaonly.safetensors or a model fine-tuned from it)."
    )


# -- configs, tokenizer, scheduler ---------------------------------------------------------------------


def read_json_config(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def shipped_configs() -> dict[str, dict[str, Any]]:
    """SD 1.5's published configs: unet, vae, text_encoder and scheduler."""
    names = (*COMPONENT_NAMES, "scheduler")
    return {name: read_json_config(SD15_CONFIG_DIR / f"{name}_config.json") for name in names}


def shipped_tokenizer(pad_token: str | None = None) -> CLIPTokenizer:
    """The real CLIP BPE tokenizer that ships with the app (SD 1.x uses it unchanged). OpenCLIP's tokenizer
    (SD 2.x, SDXL's second encoder) is the same BPE padding with "!" (id 0): pass pad_token="!"."""
    extra = {} if pad_token is None else {"pad_token": pad_token}
    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True, **extra)


def scheduler_from_config(config: dict[str, Any] | None = None) -> SchedulerMixin:
    """The scheduler the config names (a diffusers scheduler class), else PNDM like SD 1.5's default."""
    config = config or shipped_configs()["scheduler"]
    cls = getattr(diffusers, str(config.get("_class_name")), None)  # looked up in diffusers' namespace only
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        cls = PNDMScheduler
    return cls.from_config(explicit_zero_snr(dict(config)))  # zero-SNR files: A1111's levels, every sampler


def component_configs(path: Path, base: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Shipped SD 1.5 configs (or another family's `base`), with any from a ``<stem>.json`` sidecar replacing them."""
    configs = dict(base) if base is not None else shipped_configs()
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return configs
    try:
        data = read_json_config(sidecar)
    except (OSError, ValueError) as error:
        message = f"{sidecar}: sidecar config is not valid JSON ({error}); fix or remove it."
        raise CheckpointError(message) from None
    for name in COMPONENT_NAMES:
        # only dicts count: A1111's metadata JSON stores a preferred VAE *name* under "vae"
        if isinstance(data, dict) and isinstance(data.get(name), dict):
            configs[name] = data[name]
    return configs


# -- step 2: what kind of checkpoint is it -------------------------------------------------------------


def _context_dim(state_dict: dict[str, torch.Tensor]) -> int | None:
    for key, tensor in state_dict.items():
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight"):
            return int(tensor.shape[1])
    return None


def check_sd1_layout(state_dict: dict[str, torch.Tensor], path: Path, expected_context_dim: int) -> None:
    """Raises CheckpointError unless the keys and shapes are those of an SD 1.x checkpoint."""
    keys = list(state_dict)
    if any(k.startswith("conditioner.embedders") for k in keys):
        raise _unsupported(path, "SDXL layout: conditioner.embedders.* keys")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise _unsupported(path, "SD 2.x layout: OpenCLIP text encoder cond_stage_model.model.*")
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        vae_parts = ("encoder.", "decoder.", "quant_conv", "post_quant_conv")
        looks_like_vae = all(k.startswith(vae_parts) for k in keys)
        hint = " It looks like a VAE: put it in models/VAE." if looks_like_vae else ""
        raise CheckpointError(
            f"{path}: not a Stable Diffusion checkpoint (no {UNET_PREFIX}* UNet weights; a LoRA, "
            f"embedding or other add-on goes elsewhere).{hint}"
        )
    context_dim = _context_dim(state_dict)
    if context_dim == SD2_CONTEXT_DIM and expected_context_dim != SD2_CONTEXT_DIM:
        raise CheckpointError(f"{path}: an SD 2.x UNet (cross-attention width 1024) without its OpenCLIP text "
                              "encoder (cond_stage_model.model.*): use a full SD 2.x checkpoint.")
    if context_dim is None:
        raise CheckpointError(f"{path}: not a Stable Diffusion checkpoint (its UNet has no cross-attention).")
    for prefix, part in ((VAE_PREFIX, "VAE"), (CLIP_PREFIX, "text encoder")):
        if not any(k.startswith(prefix) for k in keys):
            raise CheckpointError(
                f"{path}: incomplete Stable Diffusion checkpoint: no {part} weights ({prefix}*). "
                "Use a full checkpoint, not a UNet-only extract."
            )
    if context_dim != expected_context_dim:
        raise CheckpointError(
            f"{path}: not a standard Stable Diffusion 1.x checkpoint (cross-attention width {context_dim}, "
            f"expected {expected_context_dim}). For an SD1-architecture model with other sizes, put its "
            f"configs in a sidecar {path.with_suffix('.json').name} (see pipelines/models/checkpoint_loader.py)."
        )


# -- steps 3 and 4: convert and assign -----------------------------------------------------------------


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def assign_weights(model: Any, weights: dict[str, torch.Tensor], path: Path, part: str, dtype: torch.dtype):
    """Loads `weights` into a model built on the meta device; every key must match exactly."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the {part} weights do not fit the {part} config: missing [{_few(missing)}], "
            f"unexpected [{_few(unexpected)}]. The file is damaged or not an SD 1.x model; for other "
            f"sizes use a sidecar {path.with_suffix('.json').name}."
        )
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    try:
        model.load_state_dict(cast, strict=True, assign=True)
    except RuntimeError as error:  # shape mismatches
        lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise CheckpointError(
            f"{path}: the {part} weights have unexpected shapes: {_few(lines, 3)}"
        ) from None
    return model.eval()


def _convert(converter: Any, path: Path, part: str, *args: Any) -> dict[str, torch.Tensor]:
    try:
        return converter(*args)
    except (KeyError, IndexError, AttributeError, TypeError) as error:
        # diffusers' converters index keys they expect; a missing one means a damaged or foreign layout
        raise CheckpointError(
            f"{path}: the {part} weights are not in the SD 1.x layout ({error!r})."
        ) from None


def build_unet(state_dict: dict, config: dict, path: Path, dtype: torch.dtype) -> UNet2DConditionModel:
    conv_in = state_dict.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None or conv_in.ndim != 4:
        raise CheckpointError(f"{path}: the UNet has no input conv ({UNET_PREFIX}input_blocks.0.0.weight).")
    in_channels = int(conv_in.shape[1])
    if in_channels not in SUPPORTED_UNET_INPUTS:
        raise CheckpointError(
            f"{path}: a UNet with {in_channels} input channels (e.g. instruct-pix2pix has 8) is not "
            "supported; use a regular (4) or inpainting (9) SD 1.x checkpoint."
        )
    config = {**config, "in_channels": in_channels}  # from the weights: 9 for inpainting models
    converted = _convert(convert_ldm_unet_checkpoint, path, "UNet", state_dict, config)
    with init_empty_weights():
        model = UNet2DConditionModel.from_config(config)
    return assign_weights(model, converted, path, "UNet", dtype)


def build_vae(state_dict: dict, config: dict, path: Path, dtype: torch.dtype) -> AutoencoderKL:
    """From LDM keys ("encoder.down.0...", with or without first_stage_model.) or diffusers keys."""
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in state_dict):
        converted = _rename_legacy_vae_attention(state_dict)
    else:
        converted = _convert(convert_ldm_vae_checkpoint, path, "VAE", state_dict, config)
    with init_empty_weights():
        model = AutoencoderKL.from_config(config)
    return assign_weights(model, converted, path, "VAE", dtype)


def _rename_legacy_vae_attention(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers < 0.14 saved VAE attention as query/key/value/proj_attn; today's names differ."""
    renames = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    result = {}
    for key, tensor in state_dict.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        result[key] = tensor
    return result


def build_text_encoder(state_dict: dict, config: dict, path: Path, dtype: torch.dtype) -> CLIPTextModel:
    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig.from_dict(config))
    expected = model.state_dict()
    wants_text_model = any(k.startswith("text_model.") for k in expected)  # transformers < 5.6 nests it
    converted = {}
    # Old SD1 files lack "text_model." (pre-4.x transformers names): strip it, then add it if wanted.
    for key, tensor in convert_ldm_clip_checkpoint(state_dict).items():
        bare = key.removeprefix("text_model.")
        converted[f"text_model.{bare}" if wants_text_model else bare] = tensor
    for key in [k for k in converted if k.endswith("embeddings.position_ids")]:
        del converted[key]  # often stored as broken floats (A1111 repairs them); always rebuild
    for key in [k for k in expected if k.endswith("embeddings.position_ids")]:
        converted[key] = torch.arange(expected[key].shape[-1]).unsqueeze(0)
    return assign_weights(model, converted, path, "text encoder", dtype)


def _select_ema(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Replaces the UNet weights by their EMA copies (LDM stores "model_ema.<key without dots>")."""
    for key in [k for k in state_dict if k.startswith(UNET_PREFIX)]:
        ema_key = EMA_PREFIX + key.removeprefix("model.").replace(".", "")
        if ema_key not in state_dict:
            raise CheckpointError(f"{path}: use_ema was asked for but the file has no EMA copy of {key}.")
        state_dict[key] = state_dict[ema_key]


def _load_single_file(path: Path, dtype: torch.dtype, vae_dtype: torch.dtype, use_ema: bool) -> SDComponents:
    state_dict = read_state_dict(path)
    from pipelines.models import sdxl_loader  # noqa: PLC0415 - it builds on this module's steps

    if sdxl_loader.is_sdxl_state_dict(state_dict):
        return sdxl_loader.load_sdxl_single_file(path, state_dict, dtype, vae_dtype, use_ema)
    from pipelines.models import sd2_loader  # noqa: PLC0415 - it builds on this module's steps

    if sd2_loader.is_sd2_state_dict(state_dict):
        return sd2_loader.load_sd2_single_file(path, state_dict, dtype, vae_dtype, use_ema)
    configs = component_configs(path)
    check_sd1_layout(state_dict, path, int(configs["unet"].get("cross_attention_dim", SD1_CONTEXT_DIM)))
    if use_ema:
        _select_ema(state_dict, path)
    # Drop everything not needed (EMA copies, schedule buffers) before building: less memory held.
    state_dict = {k: v for k, v in state_dict.items() if k.startswith((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX))}
    for key, tensor in state_dict.items():
        # Cast entry by entry so the file's copy of each tensor is freed as we go (no two full copies).
        target = vae_dtype if key.startswith(VAE_PREFIX) else dtype
        if tensor.is_floating_point() and tensor.dtype != target:
            state_dict[key] = tensor.to(target)
    unet = build_unet(state_dict, configs["unet"], path, dtype)
    vae = build_vae(state_dict, configs["vae"], path, vae_dtype)
    text_encoder = build_text_encoder(state_dict, configs["text_encoder"], path, dtype)
    return SDComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=shipped_tokenizer(),
        scheduler=scheduler_from_config(),
    )


# -- diffusers folders ---------------------------------------------------------------------------------


def _weights_variant(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    """{"variant": "fp16"} when a component folder only has fp16-variant weight files."""
    if any((folder / name).is_file() for name in names):
        return {}
    fp16 = [name.replace(".", ".fp16.", 1) for name in names]  # diffusion_pytorch_model.fp16.safetensors
    return {"variant": "fp16"} if any((folder / name).is_file() for name in fp16) else {}


def _check_diffusers_folder(folder: Path) -> None:
    try:
        index = read_json_config(folder / DIFFUSERS_MARKER)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: unreadable {DIFFUSERS_MARKER} ({error}).") from None
    class_name = str(index.get("_class_name", ""))
    if "XL" in class_name or "text_encoder_2" in index:
        raise _unsupported(folder, f"SDXL pipeline {class_name}")
    for part in COMPONENT_NAMES:
        if not (folder / part / "config.json").is_file():
            raise CheckpointError(
                f"{folder}: not a Stable Diffusion 1.x diffusers folder ({class_name or 'unknown pipeline'}; "
                f"no {part}/config.json)."
            )


def _load_diffusers_folder(folder: Path, dtype: torch.dtype, vae_dtype: torch.dtype) -> SDComponents:
    from pipelines.models import sdxl_loader  # noqa: PLC0415 - it builds on this module's steps

    try:
        index = read_json_config(folder / DIFFUSERS_MARKER)
    except (OSError, ValueError):
        index = {}  # _check_diffusers_folder says what is wrong with it
    if isinstance(index, dict) and sdxl_loader.is_sdxl_folder(index):
        return sdxl_loader.load_sdxl_diffusers_folder(folder, index, dtype, vae_dtype)
    _check_diffusers_folder(folder)
    model_files = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    text_files = ("model.safetensors", "pytorch_model.bin")
    try:
        unet = UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", local_files_only=True, torch_dtype=dtype,
            **_weights_variant(folder / "unet", model_files),
        )
        vae = AutoencoderKL.from_pretrained(
            folder, subfolder="vae", local_files_only=True, torch_dtype=vae_dtype,
            **_weights_variant(folder / "vae", model_files),
        )
        # dtype applied after loading: the keyword's name differs across transformers versions
        text_encoder = CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", local_files_only=True,
            **_weights_variant(folder / "text_encoder", text_files),
        ).to(dtype)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: cannot load this diffusers model: {error}") from None
    # SD 2.x: OpenCLIP text encoder; its UNet alone has linear transformer projections (SD 1.x: 1x1 convs)
    unet_config = unet.config
    is_sd2 = unet_config.cross_attention_dim == SD2_CONTEXT_DIM or bool(unet_config.use_linear_projection)
    if (folder / "tokenizer" / "vocab.json").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
    else:  # many exported folders omit it; SD 1.x uses the shipped one, SD 2.x the same padded with "!"
        tokenizer = shipped_tokenizer("!" if is_sd2 else None)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = scheduler_from_config(read_json_config(scheduler_file) if scheduler_file.is_file() else None)
    return SDComponents(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=scheduler,
        family=ModelFamily.SD2 if is_sd2 else ModelFamily.SD1,
    )


# -- public entry points -------------------------------------------------------------------------------


def load_checkpoint(
    path: Path,
    dtype: torch.dtype = torch.float32,
    *,
    vae_dtype: torch.dtype | None = None,
    use_ema: bool = False,
) -> SDComponents:
    """An SD 1.x checkpoint file (.safetensors/.ckpt) or diffusers folder, loaded offline.

    vae_dtype (default: dtype) lets --no-half-vae keep the VAE in float32 while the rest is half;
    use_ema=True takes the UNet's EMA weights from full (non-pruned) files instead of the raw ones.
    """
    path = Path(path)
    vae_dtype = vae_dtype or dtype
    if path.is_dir():
        if not (path / DIFFUSERS_MARKER).is_file():
            raise CheckpointError(f"{path}: a folder, but not a diffusers model (no {DIFFUSERS_MARKER}).")
        return _load_diffusers_folder(path, dtype, vae_dtype)
    return _load_single_file(path, dtype, vae_dtype, use_ema)


def load_vae(path: Path, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """A standalone VAE: a file in LDM layout (optionally first_stage_model.-prefixed, so a whole
    checkpoint works too) or diffusers layout, or a diffusers AutoencoderKL folder."""
    path = Path(path)
    if path.is_dir():
        subfolder = "vae" if (path / "vae" / "config.json").is_file() else None
        try:
            vae = AutoencoderKL.from_pretrained(
                path, subfolder=subfolder, local_files_only=True, torch_dtype=dtype
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path}: cannot load this VAE folder: {error}") from None
        return vae.eval()
    config = component_configs(path)["vae"]
    # Training leftovers (discriminator "loss.*", EMA copies) are not part of the model.
    state_dict = {k: v for k, v in read_state_dict(path).items() if not k.startswith(("loss.", EMA_PREFIX))}
    if any(k.startswith(VAE_PREFIX) for k in state_dict):
        state_dict = {k[len(VAE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(VAE_PREFIX)}
    if not any(k.startswith(("encoder.", "decoder.")) for k in state_dict):
        raise CheckpointError(f"{path}: not a VAE (no encoder.* / decoder.* weights).")
    return build_vae(state_dict, config, path, dtype)
