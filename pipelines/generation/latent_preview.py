"""A cheap live preview: latents -> RGB with a fixed linear map, no VAE decode (A1111's "Approx cheap").

The map runs where the latents are (the GPU during sampling) and only the finished 8-bit picture (3 bytes a
latent pixel) is copied to the CPU: the copy is the one sync point, and it carries a quarter of the bytes a
float latent would, with no CPU arithmetic after it.
"""

from __future__ import annotations

import torch
from PIL import Image

# How each latent channel contributes to R, G, B (the least-squares fits A1111's cheap approximation uses): SD 1.x
# and 2.x share a VAE; SDXL's VAE has its own latent space, where SD 1.x's map gives wrong colours.
_SD1_LATENT_RGB = (
    (0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473)
)
_SDXL_LATENT_RGB = (
    (0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163), (-0.3730, -0.2499, -0.2088)
)


def latent_rgb(latents: torch.Tensor, sdxl: bool = False) -> torch.Tensor:
    """The first latent of a batch as (h, w, 3) uint8, computed on the latents' device."""
    latent = latents[0, :4].detach().float()
    # built on the device from Python floats: no host-to-device copy of a CPU tensor (which would sync)
    weights = torch.tensor(_SDXL_LATENT_RGB if sdxl else _SD1_LATENT_RGB, dtype=torch.float32, device=latent.device)
    rgb = torch.einsum("chw,cr->hwr", latent, weights)
    return ((rgb + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)


def latent_preview(latents: torch.Tensor, sdxl: bool = False) -> Image.Image:
    """The first latent of a batch as a small RGB image (1/8 of the output size)."""
    pixels = latent_rgb(latents, sdxl).cpu().numpy()
    return Image.fromarray(pixels, "RGB")
