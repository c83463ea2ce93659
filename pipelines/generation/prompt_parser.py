"""A1111's prompt language as plain data: prompt editing schedules and emphasis weights. No torch here.

Two passes, as A1111 makes them:

1. `prompt_schedule(prompt, steps)`: prompt editing. `[from:to:when]` swaps `from` for `to` after step `when`,
   `[to:when]` adds `to` after it, `[from::when]` removes `from` after it, `[a|b|c]` alternates every step.
   `when` with a decimal point is a fraction of `steps` (`0.25`, `.5`, `1.0`), without one a step number
   (A1111's default timelines; `[a:b:1.5]` of 10 steps is step 10, not step 1). Nesting works; text that is not
   well-formed stays as it is (stray brackets and colons at the top level), and a prompt the grammar cannot
   read at all (a `|` outside brackets, a trailing lone backslash) is one unchanged text for every step.
   The result is A1111's list of [last step, text] pairs, e.g. "a [b:3]" at 10 steps -> [[3, "a "], [10, "a b"]].

2. `parse_attention(text)`: emphasis on one of those texts. `(x)` x1.1, `[x]` /1.1, `(x:1.5)`, nesting multiplies,
   unclosed brackets weigh up to the end, `\\(` `\\)` `\\[` `\\]` `\\\\` are literal characters, and `BREAK` (the
   word, upper case) becomes a chunk break marker. Returns [text, weight] runs with equal neighbours merged.

The grammar is A1111's (modules/prompt_parser.py, a lark Earley grammar); this is a recursive-descent reader of
the same language that prefers a well-formed bracket wherever one can start, as A1111's parses do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Union

BREAK_TEXT = "BREAK"
BREAK_WEIGHT = -1.0  # A1111's marker: the pair ("BREAK", -1.0) ends the chunk
ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
MAX_NESTING = 100  # deeper bracket nesting than this is not read as structure (the prompt stays literal)

_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)")
_SPACE = re.compile(r"\s+")
_STRAY = "[]():"  # characters the top level may hold unpaired
_SPECIAL = "\\[]():|"  # characters plain text cannot hold (a backslash only as an escape pair)


# 1. Prompt editing ------------------------------------------------------------------------------------------
@dataclass
class Scheduled:
    before: list["Node"] | None  # None: the [to:when] form
    after: list["Node"]
    number: str  # as written: a "." makes it a fraction of the steps
    when: int = 0  # the step, set by prompt_schedule


@dataclass
class Alternate:
    options: list[list["Node"]] = field(default_factory=list)


Node = Union[str, Scheduled, Alternate]


class _Unreadable(Exception):
    """The prompt is not in the language (A1111's parser raises; the prompt is then used as it is)."""


class _Reader:
    """Recursive descent over the prompt text. `construct(i)` reads a bracketed construct starting at i (None when
    none is well-formed there); results are memoised by position, so a failed bracket is read only once."""

    def __init__(self, text: str):
        self.text = text
        self.memo: dict[int, tuple[list[Node], int] | None] = {}
        self.depth = 0

    def top(self) -> list[Node]:
        text, nodes, i = self.text, [], 0
        while i < len(text):
            nodes_here, i = self.sequence(i)
            nodes += nodes_here
            if i >= len(text):
                break
            char = text[i]
            if char in _STRAY:  # a bracket that opens nothing well-formed, or one that closes nothing
                nodes.append(char)
                i += 1
            else:  # "|" outside an alternation, or a lone backslash at the end
                raise _Unreadable
        return nodes

    def sequence(self, i: int) -> tuple[list[Node], int]:
        """Plain text and well-formed constructs from i up to the first character that ends a prompt."""
        text, nodes = self.text, []
        while i < len(text):
            char = text[i]
            if char in "[(":
                found = self.construct(i)
                if found is None:
                    return nodes, i
                inner, i = found
                nodes += inner
            elif char == "\\":
                if i + 1 >= len(text):
                    return nodes, i
                nodes.append(text[i:i + 2])
                i += 2
            elif char in _SPECIAL:
                return nodes, i
            else:
                start = i
                while i < len(text) and text[i] not in _SPECIAL:
                    i += 1
                nodes.append(text[start:i])
        return nodes, i

    def construct(self, i: int) -> tuple[list[Node], int] | None:
        if i not in self.memo:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _Unreadable
            try:
                self.memo[i] = self._round(i) if self.text[i] == "(" else self._square(i)
            finally:
                self.depth -= 1
        return self.memo[i]

    def _round(self, i: int) -> tuple[list[Node], int] | None:
        """(x) or (x:y): emphasis, kept as text here (parse_attention weighs it later)."""
        first, j = self.sequence(i + 1)
        if j < len(self.text) and self.text[j] == ")":
            return ["(", *first, ")"], j + 1
        if j < len(self.text) and self.text[j] == ":":
            second, k = self.sequence(j + 1)
            if k < len(self.text) and self.text[k] == ")":
                return ["(", *first, ":", *second, ")"], k + 1
        return None

    def _square(self, i: int) -> tuple[list[Node], int] | None:
        """[x] (emphasis, kept as text), [x|y|...] (alternation), [to:when] or [from:to:when] (editing)."""
        text = self.text
        first, j = self.sequence(i + 1)
        if j >= len(text):
            return None
        if text[j] == "]":
            return ["[", *first, "]"], j + 1
        if text[j] == "|":
            options = [first]
            while j < len(text) and text[j] == "|":
                option, j = self.sequence(j + 1)
                options.append(option)
            if j < len(text) and text[j] == "]":
                return [Alternate(options)], j + 1
            return None
        if text[j] != ":":
            return None
        number = self._when(j + 1)  # [to:when]
        if number is not None:
            return [Scheduled(None, first, number[0])], number[1]
        second, k = self.sequence(j + 1)  # [from:to:when]
        if k < len(text) and text[k] == ":":
            number = self._when(k + 1)
            if number is not None:
                return [Scheduled(first, second, number[0])], number[1]
        return None

    def _when(self, i: int) -> tuple[str, int] | None:
        """Optional space, a number, optional space, "]": the number as written and the index after "]"."""
        space = _SPACE.match(self.text, i)
        i = space.end() if space else i
        number = _NUMBER.match(self.text, i)
        if number is None:
            return None
        i = number.end()
        space = _SPACE.match(self.text, i)
        i = space.end() if space else i
        if i < len(self.text) and self.text[i] == "]":
            return number.group(0), i + 1
        return None


def parse_schedule_tree(prompt: str) -> list[Node] | None:
    """The prompt as text pieces, Scheduled and Alternate nodes; None when the language cannot read it."""
    try:
        return _Reader(prompt).top()
    except _Unreadable:
        return None


def _edit_step(number: str, steps: int) -> int:
    """A1111's step for `when`: a fraction of `steps` when written with ".", else the step number; at most steps."""
    value = float(number)
    if "." in number:
        value *= steps
    if not math.isfinite(value) or value >= steps:
        return steps
    return int(value)


def _walk(nodes: list[Node]):
    for node in nodes:
        if isinstance(node, Scheduled):
            yield node
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: list[Node], step: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Scheduled):
            out.append(_text_at((node.before or []) if step <= node.when else node.after, step))
        else:
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step))
    return "".join(out)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """[(last step, text)] for a run of `steps` steps, in step order (A1111's prompt schedule).

    The text of entry n is used up to and including its step; see conditioning.py for how steps are counted."""
    steps = max(int(steps), 1)
    tree = parse_schedule_tree(prompt)
    if tree is None:
        return [(steps, prompt)]
    ends = {steps}
    for node in _walk(tree):
        if isinstance(node, Scheduled):
            node.when = _edit_step(node.number, steps)
            if node.when >= 1:
                ends.add(node.when)
        else:
            ends.update(range(1, steps + 1))
    return [(end, _text_at(tree, end)) for end in sorted(ends)]


# 2. Emphasis ------------------------------------------------------------------------------------------------
_ATTENTION_TOKEN = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[list]:
    """[[text, weight], ...] for one prompt text (A1111's parse_prompt_attention semantics).

    >>> parse_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")[1]
    ['house', 1.5730000000000004]
    """
    runs: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])  # an escaped bracket or backslash; a lone backslash vanishes
        elif token == "(":
            round_open.append(len(runs))
        elif token == "[":
            square_open.append(len(runs))
        elif weight is not None and round_open and _is_number(weight):
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for n, part in enumerate(_BREAK.split(token)):
                if n:
                    runs.append([BREAK_TEXT, BREAK_WEIGHT])
                runs.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, SQUARE_MULTIPLIER)
    if not runs:
        return [["", 1.0]]
    merged = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return merged


def _is_number(value: str) -> bool:
    """A1111 would raise on "(x:1.2.3)"; here such a weight is read as text instead."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def is_break(run: list) -> bool:
    return run[0] == BREAK_TEXT and run[1] == BREAK_WEIGHT
