"""SDXL's conditioning as A1111 builds it (modules/sd_models_xl.py, sd_hijack_clip.py, sgm's GeneralConditioner).

1. Each of the two text encoders chunks and weights the prompt on its own, with the same A1111 chunking and
   emphasis as SD 1.x (prompt_chunks.py): CLIP ViT-L pads with its end token, OpenCLIP bigG with "!" (id 0)
   after the first end token. SDXL always takes the penultimate layer's hidden state (no final layer norm);
   clip skip does not apply (A1111's sdxl_clip_l_skip is off by default).
2. The two outputs are concatenated along the feature axis (768 + 1280 = 2048 for the real model).
3. The pooled vector is bigG's projected output for the first chunk, before emphasis.
4. An empty negative prompt is all zeros, embeddings and pooled (sgm's force_zero_embeddings, which A1111
   applies when every text of the negative prompt's schedule is empty).
5. Size conditioning: original size = target size = the generation size, crop top-left (0, 0).
Prompt editing switches the embeddings and the pooled vector per step (step_tensors).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from pipelines.generation.conditioning import PromptConditioning, ScheduledEmbeds, needs_padding
from pipelines.generation.prompt_chunks import (
    DEFAULT_EMPHASIS,
    ChunkedPrompt,
    EmbeddingLength,
    apply_emphasis,
    chunk_prompt,
    empty_chunk,
)
from pipelines.generation.prompt_parser import prompt_schedule
from pipelines.models.embeddings import embedding_token_lengths

SDXL_CROP = (0, 0)  # A1111's sdxl_crop_top / sdxl_crop_left defaults


@dataclass
class SDXLConditioning(PromptConditioning):
    pooled_positive: ScheduledEmbeds | None = None  # entries of (1, pooled dim)
    pooled_negative: ScheduledEmbeds | None = None
    size: tuple[int, int] = (1024, 1024)  # (height, width): original size = target size
    crop: tuple[int, int] = SDXL_CROP  # (top, left)

    def added_kwargs(self) -> dict[str, Any]:
        return dict(pooled_prompt_embeds=self.pooled_positive.at(0),
                    negative_pooled_prompt_embeds=self.pooled_negative.at(0),
                    original_size=self.size, target_size=self.size, crops_coords_top_left=self.crop,
                    negative_crops_coords_top_left=self.crop)

    def step_tensors(self, step: int, batch: int, guidance: bool) -> dict[str, torch.Tensor]:
        tensors = super().step_tensors(step, batch, guidance)
        positive, negative = self.pooled_positive.at(step), self.pooled_negative.at(step)
        pooled = torch.cat([negative.repeat(batch, 1), positive.repeat(batch, 1)]) if guidance \
            else positive.repeat(batch, 1)
        tensors["add_text_embeds"] = pooled
        return tensors


def _pad_after_end(ids: torch.Tensor, end: int, pad: int) -> torch.Tensor:
    """Every id after each row's first end token becomes `pad` (A1111 process_tokens, for OpenCLIP)."""
    if pad == end:
        return ids
    ids = ids.clone()
    for row in range(ids.shape[0]):
        first = int((ids[row] == end).nonzero()[0])
        ids[row, first + 1:] = pad
    return ids


@torch.no_grad()
def _encode_one(tokenizer, text_encoder, prompts: Sequence[ChunkedPrompt], length: int, device: torch.device,
                emphasis: str, counts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, 77 * length, width) penultimate-layer states with emphasis, and the first chunk's pooled output."""
    pieces, pooled = [], None
    for i in range(length):
        batch = [p.chunks[i] if i < len(p.chunks) else empty_chunk(tokenizer) for p in prompts]
        ids = torch.tensor([c.tokens for c in batch], device=device)
        ids = _pad_after_end(ids, tokenizer.eos_token_id, tokenizer.pad_token_id)
        out = text_encoder(ids, output_hidden_states=True)
        if i == 0:
            pooled = getattr(out, "text_embeds", None)  # CLIPTextModelWithProjection only
        multipliers = torch.tensor([c.multipliers for c in batch], device=device)
        pieces.append(apply_emphasis(out.hidden_states[-2], multipliers, emphasis, counts))
    return torch.cat(pieces, dim=1), pooled


def encode_sdxl_texts(pipe, texts: Sequence[str], device: torch.device, emphasis: str = DEFAULT_EMPHASIS,
                      embedding_length: EmbeddingLength | None = None, field_name: str = "prompt",
                      counts: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 77 * chunks, width 1 + width 2) and pooled (B, projection) for B texts of one prompt's schedule."""
    # an embedding's vectors stay in one chunk in both encoders (both tokenizers know its placeholders)
    encoders = ((pipe.tokenizer, pipe.text_encoder, embedding_length),
                (pipe.tokenizer_2, pipe.text_encoder_2, embedding_token_lengths(pipe.tokenizer_2)))
    chunked = [[chunk_prompt(tokenizer, text, emphasis, embedding_length=lengths, field_name=field_name)
                for text in texts] for tokenizer, _, lengths in encoders]
    length = max(len(p.chunks) for prompts in chunked for p in prompts)  # both encoders: the same chunk count
    weights = None if counts is None else torch.tensor(list(counts), dtype=torch.float64)
    (z1, _), (z2, pooled) = (_encode_one(tokenizer, encoder, prompts, length, device, emphasis, weights)
                             for (tokenizer, encoder, _), prompts in zip(encoders, chunked))
    return torch.cat([z1, z2.to(z1.dtype)], dim=-1), pooled


def _schedule(pipe, text: str, steps: int, device, emphasis, embedding_length, field_name, zero: bool):
    schedule = prompt_schedule(text, steps)
    counts = Counter(t for _, t in schedule)
    texts = list(counts)
    z, pooled = encode_sdxl_texts(pipe, texts, device, emphasis, embedding_length, field_name,
                                  [counts[t] for t in texts])
    if zero:
        z, pooled = torch.zeros_like(z), torch.zeros_like(pooled)
    by_text = {t: (z[i:i + 1], pooled[i:i + 1]) for i, t in enumerate(texts)}
    return (ScheduledEmbeds([(end, by_text[t][0]) for end, t in schedule]),
            ScheduledEmbeds([(end, by_text[t][1]) for end, t in schedule]))


def encode_sdxl_conditioning(pipe, prompt: str, negative_prompt: str, steps: int, device: torch.device,
                             emphasis: str = DEFAULT_EMPHASIS, embedding_length: EmbeddingLength | None = None,
                             size: tuple[int, int] | None = None) -> SDXLConditioning:
    """Both prompts' schedules over `steps` sampler steps; `size` is the generation's (width, height)."""
    steps = max(int(steps), 1)
    positive, pooled_positive = _schedule(pipe, prompt, steps, device, emphasis, embedding_length, "prompt", False)
    zero_negative = all(text == "" for _, text in prompt_schedule(negative_prompt, steps))
    negative, pooled_negative = _schedule(pipe, negative_prompt, steps, device, emphasis, embedding_length,
                                          "negative_prompt", zero_negative)
    empty = encode_sdxl_texts(pipe, [""], device, emphasis)[0] if needs_padding(positive, negative) else None
    width, height = size or (1024, 1024)
    return SDXLConditioning(positive, negative, empty, steps, pooled_positive=pooled_positive,
                            pooled_negative=pooled_negative, size=(int(height), int(width)))
