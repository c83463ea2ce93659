"""Plain data shared by the loaders, the model manager and the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.models.families import ModelFamily

DEMO_MODEL_NAME = "demo-untrained"


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion model (1.x, 2.x or SDXL), as diffusers objects."""

    unet: Any  # diffusers.UNet2DConditionModel
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    scheduler: Any  # any diffusers scheduler; the engine swaps it per request
    family: ModelFamily = ModelFamily.SD1  # the architecture, detected from the weights (families.py)
    # SDXL only: the second text encoder (OpenCLIP bigG, CLIPTextModelWithProjection) and its tokenizer.
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    @property
    def v_prediction(self) -> bool:
        """SD 2.x 768-v and v-pred fine-tunes predict velocity; the scheduler config says which."""
        return self.scheduler.config.get("prediction_type") == "v_prediction"

    @property
    def is_inpainting(self) -> bool:
        """9-channel UNets (sd-v1-5-inpainting layout) take mask + masked-image latents as extra input."""
        return self.unet.config.in_channels == 9

    def as_dict(self) -> dict[str, Any]:
        """The SD 1.x / 2.x pipelines' components (SDXL pipelines add text_encoder_2 and tokenizer_2)."""
        return {
            "unet": self.unet,
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "tokenizer": self.tokenizer,
            "scheduler": self.scheduler,
        }


@dataclass(frozen=True)
class CheckpointInfo:
    """One entry of the checkpoint dropdown."""

    name: str  # file name without extension (or folder name); what infotext calls "Model"
    path: Path | None  # None for the embedded demo model
    short_hash: str | None  # A1111 short hash: first 10 hex of the file's SHA-256

    @property
    def is_demo(self) -> bool:
        return self.path is None

    @property
    def title(self) -> str:
        """What the dropdown shows and the API's sd_model_checkpoint accepts: "name [hash]"."""
        return f"{self.name} [{self.short_hash}]" if self.short_hash else self.name
