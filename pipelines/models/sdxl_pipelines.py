"""diffusers' SDXL pipelines with the one change the SD ones have: initial noise (and start latents) from the engine.

The seeded parts are the SD pipelines' own methods (sd_pipelines.py, txt2img_pipeline.py), borrowed unchanged:
SDXL's prepare_latents only adds an `add_noise` flag (for refiner hand-offs, which always add noise here).
Everything else - both text encoders' conditioning passed in as embeddings, the size conditioning
(add_time_ids), CFG, the sampling loop - is diffusers' code. No watermark: A1111 adds none.
"""

from __future__ import annotations

from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

from pipelines.models.sd_pipelines import SeededImg2ImgPipeline, SeededInpaintPipeline
from pipelines.models.txt2img_pipeline import SeededTxt2ImgPipeline


class SeededXLImg2ImgPipeline(StableDiffusionXLImg2ImgPipeline):
    """Takes `image` as encoded, scaled init latents and noise from `with pipe.noise(...)`."""

    _initial_noise = None
    noise = SeededImg2ImgPipeline.noise

    def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None,
                        add_noise=True):
        return SeededImg2ImgPipeline.prepare_latents(self, image, timestep, batch_size, num_images_per_prompt,
                                                     dtype, device, generator)


class SeededXLInpaintPipeline(StableDiffusionXLInpaintPipeline):
    """For 9-channel SDXL inpainting UNets, as SeededInpaintPipeline for SD 1.x."""

    _initial_noise = None
    _start_latents = None
    _mask_weight = 1.0
    _source_pixels = None
    noise = SeededInpaintPipeline.noise
    prepare_mask_latents = SeededInpaintPipeline.prepare_mask_latents

    def prepare_latents(self, *args, add_noise=True, **kwargs):
        return SeededInpaintPipeline.prepare_latents(self, *args, **kwargs)


class SeededXLTxt2ImgPipeline(StableDiffusionXLPipeline):
    """txt2img on SDXL, with SeededTxt2ImgPipeline's start noise."""

    _initial_noise = None
    _pure_noise = False
    noise = SeededTxt2ImgPipeline.noise
    prepare_latents = SeededTxt2ImgPipeline.prepare_latents


def _parts(components) -> dict:
    return {**components.as_dict(), "text_encoder_2": components.text_encoder_2,
            "tokenizer_2": components.tokenizer_2, "add_watermarker": False}


def build_sdxl_img2img_pipeline(components) -> SeededXLImg2ImgPipeline:
    return SeededXLImg2ImgPipeline(**_parts(components), requires_aesthetics_score=False)


def build_sdxl_inpaint_pipeline(components) -> SeededXLInpaintPipeline:
    return SeededXLInpaintPipeline(**_parts(components), requires_aesthetics_score=False)


def build_sdxl_txt2img_pipeline(components) -> SeededXLTxt2ImgPipeline:
    return SeededXLTxt2ImgPipeline(**_parts(components))


SDXL_PIPELINE_BUILDERS = {"img2img": build_sdxl_img2img_pipeline, "inpaint": build_sdxl_inpaint_pipeline,
                          "txt2img": build_sdxl_txt2img_pipeline}
