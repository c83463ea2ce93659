"""The field vocabulary every layer shares: enums, ranges, labels and the request error."""

from __future__ import annotations

import enum


class RequestError(ValueError):
    """A request field holds a value the engine cannot run. `field` names it for UI and HTTP errors."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class ResizeMode(enum.IntEnum):
    JUST_RESIZE = 0
    CROP_AND_RESIZE = 1
    RESIZE_AND_FILL = 2
    LATENT_UPSCALE = 3

    @property
    def label(self) -> str:
        return RESIZE_MODE_LABELS[self]


RESIZE_MODE_LABELS = {
    ResizeMode.JUST_RESIZE: "Just resize",
    ResizeMode.CROP_AND_RESIZE: "Crop and resize",
    ResizeMode.RESIZE_AND_FILL: "Resize and fill",
    ResizeMode.LATENT_UPSCALE: "Just resize (latent upscale)",
}

class MaskMode(enum.IntEnum):
    INPAINT_MASKED = 0
    INPAINT_NOT_MASKED = 1  # the API's inpainting_mask_invert=1


class MaskedContent(enum.IntEnum):
    """What the masked area starts from (the API's inpainting_fill)."""

    FILL = 0
    ORIGINAL = 1
    LATENT_NOISE = 2
    LATENT_NOTHING = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


class InpaintArea(enum.IntEnum):
    WHOLE_PICTURE = 0
    ONLY_MASKED = 1  # the API's inpaint_full_res=true

    @property
    def label(self) -> str:
        return "Whole picture" if self is InpaintArea.WHOLE_PICTURE else "Only masked"


MIN_SIDE, MAX_SIDE = 64, 2048
MAX_BATCH_SIZE = 8
MAX_BATCH_COUNT = 100  # n_iter: A1111's Batch count slider (1..100)
# Seeds: a negative seed means "random"; a fixed one is at most 2**32 - 1, the range A1111 draws from.
MAX_SEED = 2**32 - 1
# Prompts: A1111 has no hard limit, but every 75-token chunk is one more text-encoder pass and attention
# window; 20 chunks (1500 tokens) is far beyond any practical prompt. The character bound is checked first,
# before tokenising (a CLIP token is rarely under one character of text, so it never cuts a valid prompt).
PROMPT_CHUNK_TOKENS = 75
MAX_PROMPT_CHUNKS = 20
MAX_PROMPT_TOKENS = PROMPT_CHUNK_TOKENS * MAX_PROMPT_CHUNKS
MAX_PROMPT_CHARS = 32_768
# A1111's option `emphasis`: how (x:1.2) weights act (pipelines.generation.prompt_chunks). "Original" is its default.
EMPHASIS_MODES = ("None", "Ignore", "Original", "No norm")

# A1111's option randn_source: where seeded noise is drawn (pipelines.generation.noise). "GPU" is its default.
RANDN_SOURCES = ("GPU", "CPU", "NV")
# A1111's option initial_noise_multiplier (img2img's "Noise multiplier"): its slider's range (A1111 1.6+).
NOISE_MULTIPLIER_MIN, NOISE_MULTIPLIER_MAX = 0.0, 1.5
