"""A cheap live preview: latents -> RGB with a fixed linear map, no VAE decode (A1111's "Approx cheap")."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# How each SD 1.x latent channel contributes to R, G, B (least-squares fit published with A1111).
_SD1_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)


def latent_preview(latents: torch.Tensor) -> Image.Image:
    """The first latent of a batch as a small RGB image (1/8 of the output size)."""
    latent = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", latent[:4], _SD1_LATENT_RGB)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")
