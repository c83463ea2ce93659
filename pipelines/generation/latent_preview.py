"""A cheap live preview: latents -> RGB with a fixed linear map, no VAE decode (A1111's "Approx cheap").

The map runs where the latents are (the GPU during sampling) and only the finished 8-bit picture (3 bytes a
latent pixel) is copied to the CPU: the copy is the one sync point, and it carries a quarter of the bytes a
float latent would, with no CPU arithmetic after it.
"""

from __future__ import annotations

import torch
from PIL import Image

# How each SD 1.x latent channel contributes to R, G, B (least-squares fit published with A1111).
_SD1_LATENT_RGB = (
    (0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473)
)


def latent_rgb(latents: torch.Tensor) -> torch.Tensor:
    """The first latent of a batch as (h, w, 3) uint8, computed on the latents' device."""
    latent = latents[0, :4].detach().float()
    # built on the device from Python floats: no host-to-device copy of a CPU tensor (which would sync)
    weights = torch.tensor(_SD1_LATENT_RGB, dtype=torch.float32, device=latent.device)
    rgb = torch.einsum("chw,cr->hwr", latent, weights)
    return ((rgb + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)


def latent_preview(latents: torch.Tensor) -> Image.Image:
    """The first latent of a batch as a small RGB image (1/8 of the output size)."""
    pixels = latent_rgb(latents).cpu().numpy()
    return Image.fromarray(pixels, "RGB")
