"""A1111 infotext format: exact text and round trips (pipelines/io/infotext.py)."""

import random
import time

import pytest

from pipelines.io.infotext import (
    PARAM_PATTERN,
    build_infotext,
    find_params,
    format_value,
    parse_infotext,
    quote_value,
)

PARAMS = {
    "Steps": 20,
    "Sampler": "Euler a",
    "Schedule type": "Karras",
    "CFG scale": 7.0,
    "Seed": 1234,
    "Size": "512x512",
    "Model hash": "6ce0161689",
    "Model": "v1-5-pruned-emaonly",
    "Denoising strength": 0.75,
    "Version": "0.1.0",
}


def test_build_matches_a1111_text_exactly():
    text = build_infotext("a cat, photo", "blurry", PARAMS)
    assert text == (
        "a cat, photo\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Version: 0.1.0"
    )


def test_build_omits_empty_negative_and_none_values():
    text = build_infotext("a cat", "", {"Steps": 20, "Mask blur": None, "Seed": 1, "Size": "64x64"})
    assert text == "a cat\nSteps: 20, Seed: 1, Size: 64x64"


def test_values_with_separators_are_json_quoted():
    params = {"Steps": 1, "Lora hashes": "a: 1, b: 2", "Note": 'say "hi"\nbye', "Seed": 2}
    text = build_infotext("p", "", params)
    assert text.splitlines()[-1] == 'Steps: 1, Lora hashes: "a: 1, b: 2", Note: "say \\"hi\\"\\nbye", Seed: 2'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7.0, "7"),
        (0.75, "0.75"),
        (7.5, "7.5"),
        (20, "20"),
        (True, "True"),
        ("Euler a", "Euler a"),
        (1e-4, "0.0001"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_quote_value_only_when_needed():
    assert quote_value("plain text") == "plain text"
    assert quote_value("a,b") == '"a,b"'
    assert quote_value('"starts with a quote') == '"\\"starts with a quote"'
    assert quote_value(" padded") == '" padded"'


def test_build_rejects_unreadable_keys():
    with pytest.raises(ValueError):
        build_infotext("p", "", {"Bad: key": 1})
    with pytest.raises(ValueError):
        build_infotext("p", "", {"x": 1})  # one character: A1111's parser needs two


def test_parse_a1111_example():
    parsed = parse_infotext(
        "girl with a beret, blue eyes\n"
        "Negative prompt: ugly, (deformed)\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x768, Model hash: 45dee52b"
    )
    assert parsed == {
        "Prompt": "girl with a beret, blue eyes",
        "Negative prompt": "ugly, (deformed)",
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "7",
        "Seed": "965400086",
        "Size-1": "512",
        "Size-2": "768",
        "Model hash": "45dee52b",
    }


def test_parse_without_negative_prompt():
    parsed = parse_infotext("a dog\nSteps: 5, Seed: 3, Sampler: DDIM")
    assert parsed["Prompt"] == "a dog" and parsed["Negative prompt"] == "" and parsed["Sampler"] == "DDIM"


def test_parse_last_line_with_few_pairs_is_prompt():
    parsed = parse_infotext("line one\nStyle: noir, Mood: dark")
    assert parsed == {"Prompt": "line one\nStyle: noir, Mood: dark", "Negative prompt": ""}


def test_parse_prompt_only():
    assert parse_infotext("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}
    assert parse_infotext("Steps: 1, Seed: 2, Size: 8x8")["Prompt"] == ""


def test_parse_multiline_negative_prompt():
    parsed = parse_infotext("p1\np2\nNegative prompt: n1\nn2\nSteps: 1, Seed: 2, Sampler: Euler")
    assert parsed["Prompt"] == "p1\np2" and parsed["Negative prompt"] == "n1\nn2"


def test_round_trip_recovers_everything():
    prompt = "a castle on a hill, sunset\nsecond line: with colon\n\nafter a blank line"
    negative = "lowres, bad anatomy\nworst quality"
    params = {
        **PARAMS,
        "Mask blur": 4,
        "Mask mode": "Inpaint not masked",
        "Inpaint area": "Only masked",
        "Masked area padding": 32,
        "Lora hashes": "detail: abc123, style: def456",
        "Script note": 'line one\nline two, "quoted", back\\slash',
        "Leading quote": '"hello"',
        "Unicode": "café, 日本",
        "Hires resize": "1024x768",
    }
    parsed = parse_infotext(build_infotext(prompt, negative, params))
    assert parsed.pop("Prompt") == prompt
    assert parsed.pop("Negative prompt") == negative
    assert (parsed.pop("Size-1"), parsed.pop("Size-2")) == ("512", "512")
    assert (parsed.pop("Hires resize-1"), parsed.pop("Hires resize-2")) == ("1024", "768")
    expected = {k: format_value(v) for k, v in params.items() if k not in ("Size", "Hires resize")}
    assert parsed == expected


def test_round_trip_without_negative():
    parsed = parse_infotext(build_infotext("only prompt", "", {"Steps": 3, "Seed": 4, "Sampler": "LMS"}))
    expected = {"Prompt": "only prompt", "Negative prompt": "", "Steps": "3", "Seed": "4", "Sampler": "LMS"}
    assert parsed == expected


# Linear-time parsing: the same pairs as A1111's regex, whatever the input ------------------------------------
def test_find_params_reads_exactly_what_a1111s_regex_reads():
    """Random lines over the characters that matter (key chars, ':', ',', quotes, escapes, other spaces):
    the linear scanner and A1111's re_param agree on every one."""
    rng = random.Random(0)
    alphabet = ['a', 'b', 'Z', '1', '_', ' ', ' ', '-', '/', ':', ':', ',', ',', '"', '\\', '\t', 'é', '.']
    for _ in range(20000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert find_params(line) == PARAM_PATTERN.findall(line), repr(line)


@pytest.mark.parametrize("hostile", [
    "a" * 1000,  # one long key-character run with no colon (A1111's regex: quadratic)
    "a b " * 250,  # spaces are key characters too
    "ab: " + '"x, ' * 250,  # quoted values that never close
    "ab: x, " * 150 + "-" * 100,
])
def test_parsing_time_grows_linearly_with_the_line(hostile):
    """60,000 characters of a hostile params line parse in about the time of 6,000 x 10 (not 100 x: linear).
    The margin is generous (the quadratic regex is ~100x); the exact figure is in bench/infotext_parse.py."""
    def seconds(text):
        started = time.perf_counter()
        parse_infotext(f"a prompt\n{text}")
        return time.perf_counter() - started
    small, large = hostile * 6, hostile * 60
    # Alternated, best of 7 each: a busy machine slows both sides alike.
    timings = [(seconds(small), seconds(large)) for _ in range(7)]
    best_small, best_large = min(t[0] for t in timings), min(t[1] for t in timings)
    assert best_large < 30 * max(best_small, 1e-4)
