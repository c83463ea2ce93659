"""The prompt language as numbers (pipelines/generation/prompt_parser.py): A1111's documented examples of
prompt editing and emphasis, its edge cases, and the schedule as a list of (last step, text)."""

import pytest

from pipelines.generation.prompt_parser import (
    BREAK_WEIGHT,
    MAX_NESTING,
    parse_attention,
    parse_schedule_tree,
    prompt_schedule,
)


def schedule(prompt, steps=10):
    return [list(entry) for entry in prompt_schedule(prompt, steps)]


# 1. Prompt editing: A1111's doctests (get_learned_conditioning_prompt_schedules, 10 steps) -------------------
@pytest.mark.parametrize("prompt, expected", [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    # A1111's doctest marks "a [{b|d{:.5] c" "not handling this right now"; its grammar reads it as one literal
    # text (checked against that lark grammar), as here: see test_text_that_is_no_edit_stays_as_written.
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", [[s, "a" if s % 2 else "(b:1.1)"] for s in range(1, 11)]),
    ("[fe|]male", [[s, "female" if s % 2 else "male"] for s in range(1, 11)]),
    ("[fe|||]male", [[s, "female" if s % 4 == 1 else "male"] for s in range(1, 11)]),
])
def test_a1111_documented_schedules(prompt, expected):
    assert schedule(prompt) == expected


def test_the_comment_example_of_a1111_at_100_steps():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
              "[ in background:0.25] [shoddy:masterful:0.5]")
    assert schedule(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


@pytest.mark.parametrize("prompt, steps, expected", [
    ("[a:b:5]", 20, [[5, "a"], [20, "b"]]),  # no decimal point: a step number
    ("[a:b:0.25]", 20, [[5, "a"], [20, "b"]]),  # a fraction of the steps
    ("[a:b:0.3]", 16, [[4, "a"], [16, "b"]]),  # int(4.8): the fraction's step rounds down
    ("[a:b:1.0]", 20, [[20, "a"]]),  # "1.0" is the whole run (A1111's timelines: a "." means a fraction)
    ("[a:b:1.5]", 10, [[10, "a"]]),  # beyond the run: clamped to the last step
    ("[a:b:50]", 10, [[10, "a"]]),
    ("[a:b:0]", 10, [[10, "b"]]),  # step 0 is no entry: "b" from the first step
    ("[a:b:-2]", 10, [[10, "b"]]),
    ("[a:b:1e1]", 20, [[10, "a"], [20, "b"]]),
    ("[a:b:3 ]", 10, [[3, "a"], [10, "b"]]),  # space after the number
    ("[a::3] c", 10, [[3, "a c"], [10, " c"]]),  # [from::when] removes
    ("[a:3:4]", 10, [[4, "a"], [10, "3"]]),  # "3" is the "to" text, 4 the step
    ("[a|b] [c|d|e]", 6, [[1, "a c"], [2, "b d"], [3, "a e"], [4, "b c"], [5, "a d"], [6, "b e"]]),
])
def test_steps_as_numbers(prompt, steps, expected):
    assert schedule(prompt, steps) == expected


@pytest.mark.parametrize("prompt", [
    "a | b",  # "|" outside brackets: the language cannot read it
    "a \\",  # a lone backslash at the end
    "[a|b:3] c",  # ":" inside an alternation, then "|" at the top level
    "a [{b|d{:.5] c",  # the same: "|" may not stand in an edit's text
])
def test_unreadable_prompts_are_one_unchanged_text(prompt):
    assert parse_schedule_tree(prompt) is None
    assert schedule(prompt) == [[10, prompt]]


@pytest.mark.parametrize("prompt", ["[a:b]", "(a [b:c)", "[a:b:c:3]", "a ] b ) c : d", "\\[a:3\\]", "(a:1.2)"])
def test_text_that_is_no_edit_stays_as_written(prompt):
    assert schedule(prompt) == [[10, prompt]]


def test_emphasis_around_an_edit_keeps_its_brackets():
    assert schedule("(a [b:3]:1.2)") == [[3, "(a :1.2)"], [10, "(a b:1.2)"]]


def test_deep_nesting_is_refused_as_structure_not_a_crash():
    deep = "[" * (MAX_NESTING + 5) + "a:3" + "]" * (MAX_NESTING + 5)
    assert schedule(deep) == [[10, deep]]
    fine = "[" * 20 + "a:3]" + "]" * 19
    assert schedule(fine) == [[3, "[" * 19 + "]" * 19], [10, "[" * 19 + "a" + "]" * 19]]


def test_long_unbalanced_input_is_read_quickly():
    import time

    started = time.perf_counter()
    schedule("[(" * 5000 + "a")
    assert time.perf_counter() - started < 2


# 2. Emphasis: A1111's doctests (parse_prompt_attention) --------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
])
def test_a1111_documented_emphasis(text, expected):
    assert parse_attention(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("(x)", [["x", 1.1]]),
    ("((x))", [["x", pytest.approx(1.21)]]),
    ("[x]", [["x", pytest.approx(1 / 1.1)]]),
    ("[[x]]", [["x", pytest.approx(1 / 1.21)]]),
    ("(x:1.5)", [["x", 1.5]]),
    ("(x:0)", [["x", 0.0]]),
    ("(x:1.0)", [["x", 1.0]]),
    ("(x: 1.5)", [["x: 1.5", 1.1]]),  # a space before the weight: no weight, the text is literal
    ("x:1.5)", [["x:1.5)", 1.0]]),  # no open bracket: literal
    ("\\\\", [["\\", 1.0]]),
    ("a\\b", [["ab", 1.0]]),  # A1111 drops a backslash that escapes nothing
    ("a ] b )", [["a ] b )", 1.0]]),
    ("[unclosed (both", [["unclosed ", pytest.approx(1 / 1.1)], ["both", pytest.approx(1.0)]]),
    ("(x:1.2.3)", [["x:1.2.3)", 1.1]]),  # A1111 raises here; read as text instead
    ("", [["", 1.0]]),
])
def test_emphasis_edge_cases(text, expected):
    assert parse_attention(text) == expected


def test_break_is_a_marker_only_as_its_own_upper_case_word():
    assert parse_attention("a BREAK b") == [["a", 1.0], ["BREAK", BREAK_WEIGHT], ["b", 1.0]]
    assert parse_attention("a break b, BREAKING") == [["a break b, BREAKING", 1.0]]
    # Inside brackets A1111 weighs the marker too, so it stays the word "BREAK" (its behaviour, kept).
    assert parse_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", pytest.approx(-1.1)], ["b", 1.1]]
