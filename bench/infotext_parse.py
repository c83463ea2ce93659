"""Infotext parsing time on hostile params lines: the linear scanner vs A1111's regex (re.findall).

A PNG's `parameters` text is attacker-controlled (PNG Info, the API's png-info, send-to). A line of key
characters with no colon makes A1111's regex backtrack quadratically; the scanner is linear.

    .venv/bin/python bench/infotext_parse.py

Prints milliseconds per parse for each line and the regex/scanner ratio at the same size.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.io.infotext import PARAM_PATTERN, find_params, parse_infotext  # noqa: E402


def best_ms(func, text: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        func(text)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    cases = {"60,000 key characters, no colon": "a" * 60_000,
             "60,000 chars of 'a b '": "a b " * 15_000,
             "20,000 chars (regex comparison size)": "a" * 20_000}
    for name, line in cases.items():
        scanner = best_ms(lambda t: parse_infotext(f"prompt\n{t}"), line)
        print(f"{name}: parse_infotext {scanner:.2f} ms")
    line = "a" * 20_000
    scanner, regex = best_ms(find_params, line), best_ms(PARAM_PATTERN.findall, line, rounds=1)
    print(f"20,000-char line: A1111 regex {regex:.0f} ms, scanner {scanner:.2f} ms, ratio {regex / scanner:.0f}x")


if __name__ == "__main__":
    main()
