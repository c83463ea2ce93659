"""Emphasis, BREAK, comma backtrack, clip skip and the token counter on the demo model's real CLIP tokenizer and
tiny text encoder (pipelines/generation/prompt_chunks.py)."""

import copy
from types import SimpleNamespace

import pytest
import torch
from demo_engine import make_demo_engine

from pipelines.fields import MAX_PROMPT_CHUNKS, RequestError
from pipelines.generation.prompt_chunks import (
    ChunkedPrompt,
    chunk_prompt,
    encode_chunked,
    token_count,
)
from pipelines.generation.prompt_encoding import encode_token_ids
from ui.token_counter import counter_html

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """The demo pipeline's tokenizer and a copy of its text encoder whose final layer norm has a bias: the tiny
    model's is 0, so every output row has mean 0 and "Original"'s mean ratio would be rounding noise."""
    demo = make_demo_engine(tmp_path_factory.mktemp("data")).models.pipeline("img2img")
    encoder = copy.deepcopy(demo.text_encoder)
    with torch.no_grad():
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        norm.bias.copy_(torch.linspace(0.2, 0.8, norm.bias.numel()))
    return SimpleNamespace(tokenizer=demo.tokenizer, text_encoder=encoder)


def encode(pipe, text, emphasis="Original", clip_skip=1):
    chunked = chunk_prompt(pipe.tokenizer, text, emphasis)
    with torch.no_grad():
        return encode_chunked(pipe.tokenizer, pipe.text_encoder, [chunked], CPU, clip_skip, emphasis)


def ids(pipe, text):
    return pipe.tokenizer(text, add_special_tokens=False)["input_ids"]


# 1. Weights on CLIP's output ---------------------------------------------------------------------------------
def test_weight_one_is_exactly_the_plain_embedding(pipe):
    assert torch.equal(encode(pipe, "a (red:1.0) fox"), encode(pipe, "a red fox"))
    assert torch.equal(encode(pipe, "a red fox"), encode(pipe, "a red fox", "No norm"))


def test_a_weight_scales_only_its_tokens_rows_then_the_chunk_mean_is_restored(pipe):
    plain = encode(pipe, "a red fox")
    weighted = encode(pipe, "a (red:1.5) fox", "No norm")
    red = 2  # BOS, "a", "red", "fox", EOS...
    assert ids(pipe, "a red fox")[1] == pipe.tokenizer.convert_tokens_to_ids("red</w>")
    assert torch.allclose(weighted[0, red], plain[0, red] * 1.5)
    others = [i for i in range(77) if i != red]
    assert torch.equal(weighted[0, others], plain[0, others])
    original = encode(pipe, "a (red:1.5) fox")
    assert torch.allclose(original, weighted * (plain.mean() / weighted.mean()))
    assert torch.allclose(original.mean(), plain.mean(), atol=1e-6) and not torch.allclose(original, plain)


def test_ignore_parses_but_does_not_weigh_and_none_keeps_brackets_as_text(pipe):
    assert torch.equal(encode(pipe, "a (red:1.5) fox", "Ignore"), encode(pipe, "a red fox"))
    assert not torch.equal(encode(pipe, "a (red:1.5) fox", "None"), encode(pipe, "a red fox"))
    literal = chunk_prompt(pipe.tokenizer, "a (red:1.5) fox", "None")
    assert literal.token_count == len(ids(pipe, "a (red:1.5) fox")) > 3
    assert set(literal.chunks[0].multipliers) == {1.0}


def test_escaped_brackets_are_the_bracket_tokens(pipe):
    chunked = chunk_prompt(pipe.tokenizer, "\\(red\\)")
    assert chunked.chunks[0].tokens[1:1 + chunked.token_count] == ids(pipe, "(red)")
    assert set(chunked.chunks[0].multipliers) == {1.0}


# 2. Chunks -----------------------------------------------------------------------------------------------------
def test_break_ends_the_chunk_and_pads_it(pipe):
    chunked = chunk_prompt(pipe.tokenizer, "a cat BREAK a dog")
    assert len(chunked.chunks) == 2 and chunked.token_count == 77
    first, second = (c.tokens for c in chunked.chunks)
    bos, eos = pipe.tokenizer.bos_token_id, pipe.tokenizer.eos_token_id
    assert first == [bos] + ids(pipe, "a cat") + [eos] * 74
    assert second == [bos] + ids(pipe, "a dog") + [eos] * 74
    assert encode(pipe, "a cat BREAK a dog").shape == (1, 154, pipe.text_encoder.config.hidden_size)


def test_a_full_chunk_moves_the_words_after_its_last_comma_to_the_next(pipe):
    cat = ids(pipe, "cat")[0]
    chunked = chunk_prompt(pipe.tokenizer, "cat " * 70 + ", " + "dog " * 10)
    first, second = (c.tokens for c in chunked.chunks)
    comma = pipe.tokenizer.convert_tokens_to_ids(",</w>")
    assert first[1:72] == [cat] * 70 + [comma] and first[72] == pipe.tokenizer.eos_token_id
    assert second[1:11] == ids(pipe, "dog " * 10)
    assert chunked.token_count == 75 + 10
    # No comma within the last 20 tokens: the chunk is cut at 75.
    plain = chunk_prompt(pipe.tokenizer, "cat " * 80)
    assert plain.chunks[0].tokens[1:76] == [cat] * 75 and plain.token_count == 80
    # A weight travels with its moved tokens.
    moved = chunk_prompt(pipe.tokenizer, "cat " * 70 + ", " + "(dog:1.3) " * 10)
    assert moved.chunks[1].multipliers[1:11] == [1.3] * 10


def test_too_many_chunks_is_refused_with_the_field_name(pipe):
    with pytest.raises(RequestError, match="negative_prompt"):
        chunk_prompt(pipe.tokenizer, " BREAK ".join(["cat"] * (MAX_PROMPT_CHUNKS + 1)), field_name="negative_prompt")


def test_clip_skip_works_per_chunk(pipe):
    chunked = chunk_prompt(pipe.tokenizer, "a cat BREAK a dog")
    with torch.no_grad():
        two = encode_chunked(pipe.tokenizer, pipe.text_encoder, [chunked], CPU, clip_skip=2)
        for i, chunk in enumerate(chunked.chunks):
            expected = encode_token_ids(pipe.text_encoder, torch.tensor([chunk.tokens]), 2)
            assert torch.allclose(two[:, 77 * i:77 * (i + 1)], expected, atol=1e-6)
    assert not torch.allclose(two, encode(pipe, "a cat BREAK a dog"))


def test_batch_mean_of_a_schedule_weighs_each_text_by_its_entries(pipe):
    texts = [chunk_prompt(pipe.tokenizer, t) for t in ("(a:1.4) cat", "a dog")]
    with torch.no_grad():
        once = encode_chunked(pipe.tokenizer, pipe.text_encoder, texts, CPU, counts=[1, 1])
        repeated = encode_chunked(pipe.tokenizer, pipe.text_encoder, [texts[0], texts[0], texts[0], texts[1]], CPU)
        weighted = encode_chunked(pipe.tokenizer, pipe.text_encoder, texts, CPU, counts=[3, 1])
    assert torch.allclose(weighted[0], repeated[0], atol=1e-6) and torch.allclose(weighted[1], repeated[3], atol=1e-6)
    assert not torch.allclose(once[0], weighted[0])


# 3. The token counter ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("", (0, 75)),
    ("a cat", (2, 75)),
    ("(a:1.3) ((cat)) [dog]", (3, 75)),  # markup is not counted
    ("cat " * 75, (75, 75)),
    ("cat " * 80, (80, 150)),
    ("a cat BREAK a dog", (77, 150)),  # the first chunk counts 75
    ("[a:b c d e f:3]", (5, 75)),  # the longest text of the schedule
    ("[a|b c]", (2, 75)),
])
def test_token_count_is_a1111s(pipe, text, expected):
    assert token_count(pipe.tokenizer, text, 20) == expected


def test_counter_html_drops_extra_network_tags_and_survives_bad_input(pipe):
    assert ">2/75<" in counter_html(pipe.tokenizer, "<lora:detail:0.7> a cat", 20)
    assert ">0/75<" in counter_html(pipe.tokenizer, None, "not a number")
    assert f">{len(ids(pipe, '(a:1.3) cat'))}/75<" in counter_html(pipe.tokenizer, "(a:1.3) cat", 20, "None")
    huge = counter_html(pipe.tokenizer, " BREAK ".join(["cat"] * 30), 20)  # past the chunk limit: still counted
    assert "/" in huge and isinstance(ChunkedPrompt([], 0).target_length, int)
