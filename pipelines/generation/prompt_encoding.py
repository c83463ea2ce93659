"""One batch of 77-token chunks through the CLIP text encoder, with A1111's clip skip.

Chunking, emphasis, BREAK and prompt editing live in prompt_chunks.py and conditioning.py; this is the one
place that calls the text encoder, so every text encoder (SDXL's two included) goes through the same rule.
"""

from __future__ import annotations

from pipelines.fields import RequestError


def encode_token_ids(text_encoder, ids, clip_skip: int = 1):
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
