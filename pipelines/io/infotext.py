"""A1111 infotext: the generation parameters text stored in every output and pasted back by PNG Info.

    {prompt}
    Negative prompt: {negative}          <- omitted when empty
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, ...

`build_infotext` writes it as A1111's `create_infotext` does; `parse_infotext` reads it as A1111's
`parse_generation_parameters` does. Parsed values are always strings (A1111 too): the consumer knows each
field's type and casts it, and a value such as a model named "1234" is never mistaken for a number.
"""

from __future__ import annotations

import json
import re
from typing import Any

NEGATIVE_PREFIX = "Negative prompt:"

# A1111's re_param: `Key: value` where value is a JSON string literal or runs up to the next comma. Kept as
# the specification; `find_params` reads the same pairs in linear time (this regex, run by findall over a
# long line with no colon, backtracks quadratically: a 60,000-character line took 21 s).
PARAM_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
KEY_PATTERN = re.compile(r"\w[\w \-/]+")  # the key part of PARAM_PATTERN
_KEY_RUN = re.compile(r"[\w \-/]*")  # the rest of a key: possessive by construction (no ':' in it)
_SPACE = re.compile(r"\s*")
_QUOTED = re.compile(r'"(?:\\.|[^\\"])+"')
SIZE_PATTERN = re.compile(r"^(\d+)x(\d+)$")
MIN_PARAMS_ON_LAST_LINE = 3  # fewer pairs than this and the last line is taken as part of the prompt


def format_value(value: Any) -> str:
    """A value as A1111 prints it: whole floats without ".0" (7.0 -> "7"), everything else via str()."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote_value(text: str) -> str:
    """JSON-quote a value that would otherwise break the `Key: value, ...` line.

    A1111 quotes values containing ',', ':' or a newline. We also quote values that start with '"' or carry
    outer whitespace, which A1111's parser would otherwise unquote or strip; A1111 reads either back fine.
    """
    needs_quotes = any(c in text for c in ",:\n") or text.startswith('"') or text != text.strip()
    return json.dumps(text, ensure_ascii=False) if needs_quotes else text


def build_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """The infotext for one image: prompt, optional negative prompt line, then the params line (in
    insertion order, None values skipped). A key the parser could not read back raises ValueError."""
    for key in params:
        if not KEY_PATTERN.fullmatch(key) or key != key.strip():
            raise ValueError(f"infotext key {key!r} must be letters, digits, '_', ' ', '-' or '/' (2+ chars)")
    params_line = ", ".join(
        f"{key}: {quote_value(format_value(value))}" for key, value in params.items() if value is not None
    )
    negative_line = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{params_line}".strip()


def find_params(line: str) -> list[tuple[str, str]]:
    """`PARAM_PATTERN.findall(line)`, in time linear in the line's length.

    Where the regex fails at a position, it also fails at every later position inside the same run of key
    characters (the run ends at the same non-key character, which is not the colon a key needs), so the scan
    jumps to the run's end instead of retrying each position.
    """
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        start = _SPACE.match(line, i).end()
        if start >= n:
            break
        if not (line[start].isalnum() or line[start] == "_"):
            i = start + 1
            continue
        end = _KEY_RUN.match(line, start + 1).end()
        if end >= n or line[end] != ":" or end - start < 2:
            i = max(end, start + 1)
            continue
        value_start = _SPACE.match(line, end + 1).end()
        quoted = _QUOTED.match(line, value_start) if line.startswith('"', value_start) else None
        if quoted is not None and (quoted.end() == n or line[quoted.end()] == ","):
            value_end = quoted.end()
        else:
            comma = line.find(",", value_start)
            value_end = n if comma < 0 else comma
        pairs.append((line[start:end], line[value_start:value_end]))
        i = value_end + 1
    return pairs


def unquote_value(text: str) -> str:
    """Undo quote_value; anything that is not a valid JSON string literal is returned unchanged."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """Prompt lines up to the "Negative prompt:" line, negative prompt lines after (each line stripped)."""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if not negative and line.startswith(NEGATIVE_PREFIX):
            negative.append(line[len(NEGATIVE_PREFIX) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt), "\n".join(negative)


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse an infotext into {"Prompt", "Negative prompt", <key>: <str value>, ...}.

    "Size: 512x512" (any `WxH` value) becomes "Size-1": "512", "Size-2": "512". The last line is the params
    line only if it holds at least 3 `Key: value` pairs; otherwise it belongs to the prompt. Unlike A1111,
    no defaults (Clip skip, Mask mode, ...) are added: the result holds only what the text says.
    """
    *lines, last_line = text.strip().split("\n")
    pairs = find_params(last_line)
    if len(pairs) < MIN_PARAMS_ON_LAST_LINE:
        lines.append(last_line)
        pairs = []

    prompt, negative = _split_prompts(lines)
    result: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative}
    for key, raw in pairs:
        value = unquote_value(raw)
        size = SIZE_PATTERN.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    return result
