"""The conditionings of one run: the prompt's and the negative prompt's schedules, each distinct text encoded once.

Prompt editing and alternation (prompt_parser.prompt_schedule) give each prompt a list of (last step, text).
Steps are counted as A1111's CFG denoiser counts them: the sampler's steps that actually run, numbered from 0,
and step k uses the first entry whose last step is >= k ("a [b:3]" over 10 steps: "a " for steps 0-3, then
"a b"; "[a|b]": a, a, b, a, b, ...). The engine passes step 0's embeddings to diffusers and switches in its
callback_on_step_end by returning "prompt_embeds" in the layout the SD pipelines use for classifier-free
guidance: cat([negative, positive]), each repeated per batch image.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from pipelines.generation.prompt_chunks import (
    DEFAULT_EMPHASIS,
    EmbeddingLength,
    chunk_prompt,
    encode_chunked,
)
from pipelines.generation.prompt_parser import prompt_schedule


@dataclass
class ScheduledEmbeds:
    """One prompt's schedule: (last step, embeddings (1, 77 * chunks, dim)); equal texts share one tensor."""

    entries: list[tuple[int, torch.Tensor]]

    def at(self, step: int) -> torch.Tensor:
        for end, embeds in self.entries:
            if step <= end:
                return embeds
        return self.entries[-1][1]


@dataclass
class PromptConditioning:
    positive: ScheduledEmbeds
    negative: ScheduledEmbeds
    # (1, 77, dim): the empty prompt's chunk, which pads the shorter side; None when every text has the same
    # chunk count (nothing is ever padded, so the encoder is not run a third time for it)
    empty: torch.Tensor | None
    steps: int  # the sampler steps the schedules were made for
    _pairs: dict = field(default_factory=dict)

    @property
    def varies(self) -> bool:
        """Whether the embeddings change during the run (prompt editing or alternation in either prompt)."""
        return any(len({id(e) for _, e in s.entries}) > 1 for s in (self.positive, self.negative))

    def pair(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) at sampler step `step` (from 0), padded to the same length with empty chunks."""
        positive, negative = self.positive.at(step), self.negative.at(step)
        key = (id(positive), id(negative))
        if key not in self._pairs:
            self._pairs[key] = (self._pad(positive, negative.shape[1]), self._pad(negative, positive.shape[1]))
        return self._pairs[key]

    def _pad(self, embeds: torch.Tensor, length: int) -> torch.Tensor:
        if length <= embeds.shape[1]:
            return embeds
        missing = (length - embeds.shape[1]) // self.empty.shape[1]
        return torch.cat([embeds, self.empty.repeat(1, missing, 1)], dim=1) if missing > 0 else embeds

    def step_for_call(self, call: int, calls: int) -> int:
        """The sampler step of UNet call `call` (from 0) out of `calls` (second-order samplers call it twice)."""
        return call * self.steps // max(calls, 1) if calls != self.steps else call

    def guidance_embeds(self, step: int, batch: int, guidance: bool, like: torch.Tensor | None = None) -> torch.Tensor:
        """The pipeline's prompt_embeds at `step`: cat([negative, positive]) with guidance, else positive."""
        positive, negative = self.pair(step)
        embeds = torch.cat([negative.repeat(batch, 1, 1), positive.repeat(batch, 1, 1)]) if guidance \
            else positive.repeat(batch, 1, 1)
        return embeds if like is None else embeds.to(device=like.device, dtype=like.dtype)

    def added_kwargs(self) -> dict[str, Any]:
        """Pipeline call arguments a family needs besides prompt_embeds (SDXL: pooled and size conditioning)."""
        return {}

    def step_tensors(self, step: int, batch: int, guidance: bool) -> dict[str, torch.Tensor]:
        """What the step callback returns to diffusers to switch to `step`'s conditioning (prompt editing)."""
        return {"prompt_embeds": self.guidance_embeds(step, batch, guidance)}


def schedule_embeds(tokenizer, text_encoder, prompt: str, steps: int, device: torch.device, clip_skip: int = 1,
                    emphasis: str = DEFAULT_EMPHASIS, embedding_length: EmbeddingLength | None = None,
                    field_name: str = "prompt") -> ScheduledEmbeds:
    """Encode one prompt's schedule: every distinct text once, all of them in one batch per chunk position."""
    schedule = prompt_schedule(prompt, steps)
    counts = Counter(text for _, text in schedule)
    texts = list(counts)
    chunked = [chunk_prompt(tokenizer, text, emphasis, embedding_length=embedding_length, field_name=field_name)
               for text in texts]
    encoded = encode_chunked(tokenizer, text_encoder, chunked, device, clip_skip, emphasis,
                             [counts[t] for t in texts])
    by_text = {text: encoded[i:i + 1] for i, text in enumerate(texts)}
    return ScheduledEmbeds([(end, by_text[text]) for end, text in schedule])


def encode_conditioning(tokenizer, text_encoder, prompt: str, negative_prompt: str, steps: int,
                        device: torch.device, clip_skip: int = 1, emphasis: str = DEFAULT_EMPHASIS,
                        embedding_length: EmbeddingLength | None = None) -> PromptConditioning:
    """Both prompts' schedules for a run of `steps` sampler steps. The texts are what remains after extra-network
    tags (<lora:...>) are taken out; `embedding_length` keeps textual-inversion vectors in one chunk."""
    steps = max(int(steps), 1)
    positive = schedule_embeds(tokenizer, text_encoder, prompt, steps, device, clip_skip, emphasis,
                               embedding_length)
    negative = schedule_embeds(tokenizer, text_encoder, negative_prompt, steps, device, clip_skip, emphasis,
                               embedding_length, "negative_prompt")
    empty = None
    if needs_padding(positive, negative):
        empty = encode_chunked(tokenizer, text_encoder, [chunk_prompt(tokenizer, "")], device, clip_skip, emphasis)
    return PromptConditioning(positive, negative, empty, steps)


def needs_padding(positive: ScheduledEmbeds, negative: ScheduledEmbeds) -> bool:
    """Whether some pair of texts differs in chunk count, so the shorter one is padded with empty chunks."""
    return len({embeds.shape[1] for s in (positive, negative) for _, embeds in s.entries}) > 1


def uses_emphasis_markup(texts: Sequence[str], steps: int) -> bool:
    """A1111 writes "Emphasis: <mode>" to the infotext only when a text it encoded has "(" or "["."""
    return any("(" in t or "[" in t for text in texts for _, t in prompt_schedule(text, steps))
