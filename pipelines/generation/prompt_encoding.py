"""Prompt -> CLIP embeddings with no silent truncation: A1111's 75-token chunks, each wrapped and encoded."""

from __future__ import annotations

import torch

from pipelines.fields import RequestError

CHUNK_TOKENS = 75  # 77 minus the BOS and EOS every chunk gets


def chunk_token_ids(tokenizer, prompt: str) -> list[list[int]]:
    """Token ids of `prompt` in chunks of 77: BOS + up to 75 tokens + padding (EOS) + EOS."""
    ids = tokenizer(prompt, add_special_tokens=False, truncation=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pieces = [ids[i : i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)] or [[]]
    return [[bos] + p + [eos] * (CHUNK_TOKENS - len(p)) + [eos] for p in pieces]


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompt: str, negative_prompt: str,
                   device: torch.device, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
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
    hidden = encode_token_ids(text_encoder, ids, clip_skip)  # (2 * count, 77, dim): every chunk of both prompts
    dim = hidden.shape[-1]
    return hidden[:count].reshape(1, -1, dim), hidden[count:].reshape(1, -1, dim)


def encode_token_ids(text_encoder, ids: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
    """The CLIP text encoder's output for `ids`. Clip skip n > 1 (A1111's CLIP_stop_at_last_layers) takes the
    hidden state n layers from the end and passes it through the text model's final layer norm, as A1111's
    FrozenCLIPEmbedderWithCustomWords does; 1 is the usual last_hidden_state."""
    if clip_skip <= 1:
        return text_encoder(ids)[0]
    out = text_encoder(ids, output_hidden_states=True)
    layers = len(out.hidden_states) - 1  # hidden_states[0] is the embeddings' output
    if clip_skip > layers:
        raise RequestError("clip_skip", f"{clip_skip} is more than the text encoder's {layers} layers")
    text_model = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 dropped the wrapper
    return text_model.final_layer_norm(out.hidden_states[-clip_skip])
