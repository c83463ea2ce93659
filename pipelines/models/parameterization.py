"""What a checkpoint says about its own prediction: epsilon or v, and zero terminal SNR.

Three sources, read by every family's loader (SD 2.x here; SDXL v-pred fine-tunes use the same keys):
  * a ``<stem>.yaml`` beside the checkpoint (A1111's convention: an LDM config whose
    ``model.params.parameterization`` is "v" for v-prediction), read with yaml.safe_load only for the few
    values that matter here; A1111 prefers it over anything it guesses from the weights;
  * marker keys in the state dict: ``v_pred`` (v-prediction) and ``ztsnr`` (zero terminal SNR), as the
    v-pred SDXL fine-tunes ship them and ComfyUI / Forge read them;
  * the weights themselves (SD 2.x only: A1111's test run of the UNet, in sd2_loader).

A zero-terminal-SNR model gets A1111's rescaled noise schedule (rescale_zero_terminal_snr_abar) as explicit
`trained_betas` in its scheduler config (explicit_zero_snr, applied by checkpoint_loader.scheduler_from_config),
so every sampler and the A1111 schedule maths see the same levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipelines.models.checkpoint_files import CheckpointError

V_PRED_KEY, ZTSNR_KEY = "v_pred", "ztsnr"
# A1111 keeps the last step's alphas_cumprod just above zero so its sigma stays finite.
A1111_TERMINAL_ALPHA_BAR = 4.8973451890853435e-08
YAML_PARAMETERIZATIONS = {"v": True, "eps": False}


@dataclass(frozen=True)
class YamlConfig:
    """The values of an A1111 ``<stem>.yaml`` this app honours (None: the file does not say)."""

    path: Path
    v_prediction: bool | None = None
    in_channels: int | None = None
    use_linear_in_transformer: bool | None = None
    context_dim: int | None = None
    text_layer: str | None = None  # FrozenOpenCLIPEmbedder's "penultimate" or "last"


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def read_yaml_config(checkpoint: Path) -> YamlConfig | None:
    """The ``<stem>.yaml`` beside `checkpoint`, if any. Errors name the file and the value at fault."""
    path = Path(checkpoint).with_suffix(".yaml")
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}: not a readable YAML config ({error}); fix or remove it.") from None
    params = _dig(data, "model", "params")
    unet = _dig(params, "unet_config", "params")
    parameterization = _dig(params, "parameterization")
    if parameterization is not None and parameterization not in YAML_PARAMETERIZATIONS:
        raise CheckpointError(f"{path}: model.params.parameterization {parameterization!r} is not one of "
                              f"{', '.join(YAML_PARAMETERIZATIONS)}.")
    values = {"in_channels": _dig(unet, "in_channels"), "context_dim": _dig(unet, "context_dim")}
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise CheckpointError(f"{path}: unet_config {name} {value!r} is not a whole number.")
    linear = _dig(unet, "use_linear_in_transformer")
    layer = _dig(params, "cond_stage_config", "params", "layer")
    return YamlConfig(path, YAML_PARAMETERIZATIONS.get(parameterization), values["in_channels"],
                      bool(linear) if linear is not None else None, values["context_dim"],
                      layer if layer in ("penultimate", "last") else None)


def marker_keys(state_dict: dict[str, torch.Tensor]) -> tuple[bool, bool]:
    """(v_pred, ztsnr) marker keys present in the state dict."""
    return V_PRED_KEY in state_dict, ZTSNR_KEY in state_dict


def zero_snr_betas(config: dict[str, Any]) -> list[float]:
    """Betas whose cumulative product is A1111's zero-terminal-SNR rescale of the model's alphas_cumprod."""
    n, start, end = config["num_train_timesteps"], config["beta_start"], config["beta_end"]
    if config.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).float()
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))  # shift: last level 0; scale: first level unchanged
    rescaled = (root ** 2).double()
    rescaled[-1] = A1111_TERMINAL_ALPHA_BAR
    previous = torch.cat([torch.ones(1, dtype=torch.float64), rescaled[:-1]])
    return (1.0 - rescaled / previous).tolist()


def apply_prediction(scheduler_config: dict[str, Any], v_prediction: bool, zero_snr: bool) -> dict[str, Any]:
    """The scheduler config with the model's prediction type and, for zero-SNR models, diffusers' flag
    rescale_betas_zero_snr (explicit_zero_snr turns it into A1111's levels)."""
    config = dict(scheduler_config)
    config["prediction_type"] = "v_prediction" if v_prediction else "epsilon"
    if zero_snr:
        config["rescale_betas_zero_snr"] = True
    return config


def explicit_zero_snr(scheduler_config: dict[str, Any]) -> dict[str, Any]:
    """rescale_betas_zero_snr -> A1111's rescaled betas as trained_betas. Only some diffusers schedulers know the
    flag (and end at alphas_cumprod 0 or 2**-24); trained_betas reach every scheduler and the A1111 schedule
    maths alike, with A1111's finite last level."""
    if not scheduler_config.get("rescale_betas_zero_snr") or scheduler_config.get("trained_betas") is not None:
        return scheduler_config
    return {**scheduler_config, "trained_betas": zero_snr_betas(scheduler_config), "rescale_betas_zero_snr": False}


def is_zero_snr(scheduler_config: Any) -> bool:
    """Whether a scheduler config carries a zero-terminal-SNR schedule (its last alphas_cumprod ~ 0)."""
    if scheduler_config.get("rescale_betas_zero_snr", False):
        return True
    betas = scheduler_config.get("trained_betas")
    return betas is not None and float(np.prod(1.0 - np.asarray(betas, dtype=np.float64))) < 1e-6
