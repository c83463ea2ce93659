"""Prompt -> CLIP embeddings with no silent truncation: A1111's 75-token chunks, each wrapped and encoded."""

from __future__ import annotations

import torch

CHUNK_TOKENS = 75  # 77 minus the BOS and EOS every chunk gets


def chunk_token_ids(tokenizer, prompt: str) -> list[list[int]]:
    """Token ids of `prompt` in chunks of 77: BOS + up to 75 tokens + padding (EOS) + EOS."""
    ids = tokenizer(prompt, add_special_tokens=False, truncation=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pieces = [ids[i : i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)] or [[]]
    return [[bos] + p + [eos] * (CHUNK_TOKENS - len(p)) + [eos] for p in pieces]


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompt: str, negative_prompt: str,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, negative_embeds), each (1, 77 * chunks, dim), padded to the same chunk count.

    A short prompt gives exactly what diffusers' own encode_prompt gives (one 77-token window); a long
    one is split into 75-token chunks encoded separately and concatenated, as A1111 does, so nothing
    past token 75 is dropped. The shorter side is padded with empty-prompt chunks so both line up.
    """
    pos, neg = chunk_token_ids(tokenizer, prompt), chunk_token_ids(tokenizer, negative_prompt)
    empty = chunk_token_ids(tokenizer, "")[0]
    count = max(len(pos), len(neg))
    pos += [empty] * (count - len(pos))
    neg += [empty] * (count - len(neg))
    ids = torch.tensor(pos + neg, device=device)
    hidden = text_encoder(ids)[0]  # (2 * count, 77, dim): one pass for every chunk of both prompts
    dim = hidden.shape[-1]
    return hidden[:count].reshape(1, -1, dim), hidden[count:].reshape(1, -1, dim)
