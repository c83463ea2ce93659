"""One prompt text -> CLIP chunks of 77 tokens with per-token emphasis weights, encoded (A1111's sd_hijack_clip).

A chunk is BOS + 75 tokens + EOS; a short chunk is padded with EOS. Chunks end at 75 tokens, at BREAK, or, when
a chunk would end inside a phrase, just after the last comma within the last 20 tokens (A1111's
comma_padding_backtrack), the rest moving to the next chunk. Every chunk is encoded on its own (clip skip as
prompt_encoding.encode_token_ids), its rows multiplied by their weights, then - emphasis "Original" - the
chunk rescaled to the mean it had before weighting.

The tokenizer and text encoder are parameters, so a model with two text encoders (SDXL) chunks and encodes
the same text once per encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from pipelines.fields import EMPHASIS_MODES, MAX_PROMPT_CHUNKS, PROMPT_CHUNK_TOKENS, RequestError
from pipelines.generation.prompt_encoding import encode_token_ids
from pipelines.generation.prompt_parser import is_break, parse_attention, prompt_schedule

COMMA_PADDING_BACKTRACK = 20  # A1111's default: move at most this many tokens after a comma to the next chunk
# A1111's `emphasis` option: None = brackets are literal text; Ignore = parsed, weights not applied;
# Original = weights, then the chunk's mean restored; No norm = weights only.
EMPHASIS_NONE, EMPHASIS_IGNORE, EMPHASIS_ORIGINAL, EMPHASIS_NO_NORM = EMPHASIS_MODES
DEFAULT_EMPHASIS = EMPHASIS_ORIGINAL

# Where the other engineers' textual-inversion support plugs in: given the token ids of one text and a position,
# how many ids starting there belong to one embedding that must not be split across chunks (0: none).
EmbeddingLength = Callable[[Sequence[int], int], int]


@dataclass
class PromptChunk:
    tokens: list[int] = field(default_factory=list)  # 77 ids once closed
    multipliers: list[float] = field(default_factory=list)


@dataclass
class ChunkedPrompt:
    chunks: list[PromptChunk]
    token_count: int  # A1111's count: 75 per full chunk plus the tokens of the last one

    @property
    def target_length(self) -> int:
        """The "75" of the counter "12/75": 75 per chunk the count needs (A1111 get_target_prompt_token_count)."""
        return math.ceil(max(self.token_count, 1) / PROMPT_CHUNK_TOKENS) * PROMPT_CHUNK_TOKENS


def _comma_token(tokenizer) -> int | None:
    return tokenizer.get_vocab().get(",</w>")


def chunk_prompt(tokenizer, text: str, emphasis: str = DEFAULT_EMPHASIS,
                 comma_backtrack: int = COMMA_PADDING_BACKTRACK, embedding_length: EmbeddingLength | None = None,
                 field_name: str = "prompt") -> ChunkedPrompt:
    """The chunks of one prompt text (no prompt editing left in it: see prompt_parser.prompt_schedule)."""
    runs = parse_attention(text) if emphasis != EMPHASIS_NONE else [[text, 1.0]]
    tokenized = tokenizer([run[0] for run in runs], add_special_tokens=False, truncation=False)["input_ids"]
    bos, eos, comma = tokenizer.bos_token_id, tokenizer.eos_token_id, _comma_token(tokenizer)
    size = PROMPT_CHUNK_TOKENS
    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    count = 0
    last_comma = -1

    def close(is_last: bool = False) -> None:
        nonlocal chunk, count, last_comma
        count += len(chunk.tokens) if is_last else size
        pad = size - len(chunk.tokens)
        chunk.tokens = [bos] + chunk.tokens + [eos] * pad + [eos]
        chunk.multipliers = [1.0] + chunk.multipliers + [1.0] * pad + [1.0]
        chunks.append(chunk)
        if len(chunks) > MAX_PROMPT_CHUNKS:
            raise RequestError(field_name, f"more than {MAX_PROMPT_CHUNKS} chunks of {size} tokens "
                                           f"(the limit is {MAX_PROMPT_CHUNKS * size} tokens)")
        chunk, last_comma = PromptChunk(), -1

    for ids, run in zip(tokenized, runs):
        if is_break(run):
            close()
            continue
        weight = run[1]
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (comma_backtrack and len(chunk.tokens) == size and last_comma != -1
                  and len(chunk.tokens) - last_comma <= comma_backtrack):
                # The chunk is full in the middle of a phrase: end it after its last comma instead.
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.multipliers[cut:]
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                close()
                chunk.tokens, chunk.multipliers = moved_tokens, moved_weights
            if len(chunk.tokens) == size:
                close()
            length = embedding_length(ids, position) if embedding_length else 0
            if length <= 0:
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1
                continue
            if len(chunk.tokens) + length > size:  # an embedding's vectors stay in one chunk
                close()
            chunk.tokens += list(ids[position:position + length])
            chunk.multipliers += [weight] * length
            position += length
    if chunk.tokens or not chunks:
        close(is_last=True)
    return ChunkedPrompt(chunks, count)


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, emphasis: str,
                   counts: torch.Tensor | None = None) -> torch.Tensor:
    """z (B, 77, dim) of one chunk position for B texts, multipliers (B, 77). "Original" restores the mean of the
    whole batch, as A1111 does for the texts of one prompt's schedule; `counts` weighs each text by how many
    schedule entries use it (A1111 encodes every entry, duplicates included)."""
    if emphasis in (EMPHASIS_NONE, EMPHASIS_IGNORE) or bool((multipliers == 1).all()):
        return z  # (all weights 1: A1111's rescale is by exactly 1, or 0/0 on an output whose mean is 0)
    weighted = z * multipliers.to(z).unsqueeze(-1)
    if emphasis == EMPHASIS_NO_NORM:
        return weighted
    if counts is None:
        original_mean, new_mean = z.mean(), weighted.mean()
    else:
        share = (counts / counts.sum()).to(z)
        original_mean = (z.mean(dim=(1, 2)) * share).sum()
        new_mean = (weighted.mean(dim=(1, 2)) * share).sum()
    ratio = original_mean / new_mean
    return weighted * ratio if torch.isfinite(ratio) else weighted


def pad_after_end(tokenizer, tokens: list[int]) -> list[int]:
    """A1111's process_tokens: where the tokenizer's pad id is not EOS (OpenCLIP: SD 2.x, SDXL's second encoder,
    pad "!" = 0), every id after the chunk's first EOS becomes the pad id; CLIP ViT-L pads with EOS itself."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos or eos not in tokens:
        return tokens
    end = tokens.index(eos) + 1
    return tokens[:end] + [pad] * (len(tokens) - end)


def empty_chunk(tokenizer) -> PromptChunk:
    size = PROMPT_CHUNK_TOKENS
    return PromptChunk([tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (size + 1), [1.0] * (size + 2))


@torch.no_grad()
def encode_chunked(tokenizer, text_encoder, prompts: Sequence[ChunkedPrompt], device: torch.device,
                   clip_skip: int = 1, emphasis: str = DEFAULT_EMPHASIS,
                   counts: Sequence[int] | None = None) -> torch.Tensor:
    """(B, 77 * chunks, dim) for B chunked texts of one prompt, as A1111 encodes a prompt's schedule: chunk
    position i of every text in one batch (shorter texts padded with empty chunks), emphasis per batch."""
    length = max(len(p.chunks) for p in prompts)
    weights = None if counts is None else torch.tensor(list(counts), dtype=torch.float64)
    pieces = []
    for i in range(length):
        batch = [p.chunks[i] if i < len(p.chunks) else empty_chunk(tokenizer) for p in prompts]
        ids = torch.tensor([pad_after_end(tokenizer, c.tokens) for c in batch], device=device)
        z = encode_token_ids(text_encoder, ids, clip_skip)
        multipliers = torch.tensor([c.multipliers for c in batch], device=z.device)
        pieces.append(apply_emphasis(z, multipliers, emphasis, weights))
    return torch.cat(pieces, dim=1)


def token_count(tokenizer, text: str, steps: int, emphasis: str = DEFAULT_EMPHASIS) -> tuple[int, int]:
    """A1111's prompt token counter: (tokens, chunk capacity) of the longest text of the prompt's schedule,
    e.g. (80, 150). Never fails: text the limits refuse still counts (the count is what the user needs)."""
    best: ChunkedPrompt | None = None
    for variant in dict.fromkeys(t for _, t in prompt_schedule(text, steps)):
        try:
            chunked = chunk_prompt(tokenizer, variant, emphasis)
        except RequestError:
            ids = tokenizer(variant, add_special_tokens=False, truncation=False)["input_ids"]
            chunked = ChunkedPrompt([], len(ids))
        if best is None or chunked.token_count > best.token_count:
            best = chunked
    return best.token_count, best.target_length
