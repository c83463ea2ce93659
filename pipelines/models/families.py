"""The model families the app runs, and what each needs by default.

A checkpoint's family is detected from its weights' keys and shapes (checkpoint_loader) and carried on
SDComponents.family; the engine, the UI and /sdapi/v1/sd-models read it from there.
"""

from __future__ import annotations

from enum import Enum


class ModelFamily(str, Enum):
    SD1 = "sd1"  # Stable Diffusion 1.x (CLIP ViT-L/14, 768-wide cross-attention)
    SD2 = "sd2"  # Stable Diffusion 2.x (OpenCLIP ViT-H/14, 1024-wide cross-attention; 768-v predicts velocity)
    SDXL = "sdxl"  # Stable Diffusion XL (CLIP ViT-L + OpenCLIP bigG, pooled and size conditioning)

    @property
    def label(self) -> str:
        return {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}[self.value]

    @property
    def honours_clip_skip(self) -> bool:
        """A1111 applies "Clip skip" (CLIP_stop_at_last_layers) to SD 1.x only: SD 2.x's OpenCLIP embedder always
        reads its penultimate layer (sd_hijack_open_clip ignores the option; diffusers' SD 2 text encoder is cut
        there, so its last layer is that one) and SDXL's encoders read fixed layers."""
        return self is ModelFamily.SD1

    def default_size(self, v_prediction: bool = False) -> int:
        """The side a model of this family was trained at (A1111's default when the user chose none)."""
        if self is ModelFamily.SDXL:
            return 1024
        if self is ModelFamily.SD2 and v_prediction:
            return 768
        return 512
