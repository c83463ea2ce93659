import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pipelines.generation.conditioning import encode_conditioning
from pipelines.generation.noise import initial_noise, resolve_seed, slerp
from pipelines.generation.prompt_chunks import chunk_prompt
from pipelines.launch_flags import PROJECT_ROOT

TOKENIZER = CLIPTokenizer.from_pretrained(PROJECT_ROOT / "models" / "configs" / "clip-tokenizer")


def tiny_text_encoder():
    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, vocab_size=49408, max_position_embeddings=77)).eval()


def test_shipped_tokenizer_matches_clip():
    assert len(TOKENIZER) == 49408
    assert TOKENIZER("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_short_prompt_is_one_window_like_diffusers():
    chunks = chunk_prompt(TOKENIZER, "a photo of a cat").chunks
    expected = TOKENIZER("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert [c.tokens for c in chunks] == [expected]


def test_long_prompt_is_split_into_75_token_chunks_not_truncated():
    prompt = " ".join(f"word{i}" for i in range(60))  # well over 75 tokens, no comma to break at
    ids = TOKENIZER(prompt, add_special_tokens=False).input_ids
    chunks = [c.tokens for c in chunk_prompt(TOKENIZER, prompt).chunks]
    assert len(chunks) == -(-len(ids) // 75) >= 2
    assert all(len(c) == 77 and c[0] == 49406 and c[-1] == 49407 for c in chunks)
    body = [t for c in chunks for t in c[1:-1]]
    assert body[:len(ids)] == ids  # nothing dropped


def test_embeddings_pad_negative_to_same_length_and_last_chunk_matters():
    enc = tiny_text_encoder()
    cpu = torch.device("cpu")
    a = encode_conditioning(TOKENIZER, enc, "red " * 80 + "cat", "", 4, cpu)
    b = encode_conditioning(TOKENIZER, enc, "red " * 80 + "dog", "", 4, cpu)
    pos, neg = a.positive.at(0), a.negative.at(0)
    assert pos.shape == (1, 154, 32) and neg.shape == (1, 77, 32)  # padded with the empty chunk when used
    pos_b = b.positive.at(0)
    assert torch.equal(pos[:, :77], pos_b[:, :77]) and not torch.equal(pos[:, 77:], pos_b[:, 77:])


def test_seeds_and_variation_noise():
    assert resolve_seed(42) == 42
    assert 0 <= resolve_seed(-1) < 2**32
    a = initial_noise((4, 8, 8), 1, 2, 0.0)
    assert torch.equal(a, initial_noise((4, 8, 8), 1, 99, 0.0))  # no strength: subseed ignored
    b = initial_noise((4, 8, 8), 2, 0, 0.0)
    assert torch.allclose(initial_noise((4, 8, 8), 1, 2, 1.0), b, atol=1e-5)
    mid = initial_noise((4, 8, 8), 1, 2, 0.3)
    assert not torch.equal(mid, a) and not torch.equal(mid, b)
    assert abs(mid.std().item() - 1) < 0.2  # slerp keeps the noise's scale, unlike a linear mix
    assert torch.equal(slerp(0.0, a, b), a)
