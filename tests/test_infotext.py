"""A1111 infotext format: exact text and round trips (pipelines/io/infotext.py)."""

import pytest

from pipelines.io.infotext import build_infotext, format_value, parse_infotext, quote_value

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
