"""Saved prompt styles: A1111's styles.csv (columns name, prompt, negative_prompt) in the data dir.

Applying a style (A1111 `merge_prompts`): a style text with `{prompt}` has the prompt put in its place;
otherwise the style text is appended after ", ". Several styles apply in the order chosen. The infotext
records the prompt with its styles applied (as A1111 does); `extract_styles` finds them again for PNG Info
(A1111's "Apply if any" paste: the styles are selected and taken out of the pasted prompt).
"""

from __future__ import annotations

import csv
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STYLES_FILE = "styles.csv"
PROMPT_PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompts(style_prompt: str, prompt: str) -> str:
    if PROMPT_PLACEHOLDER in style_prompt:
        return style_prompt.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: list[PromptStyle]) -> tuple[str, str]:
    for style in styles:
        prompt = merge_prompts(style.prompt, prompt)
        negative_prompt = merge_prompts(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def _extract_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo merge_prompts for one text: (found, the prompt without the style)."""
    prompt, style_text = prompt.strip(), style_text.strip()
    if PROMPT_PLACEHOLDER in style_text:
        left, right = style_text.split(PROMPT_PLACEHOLDER, 1)
        if prompt.startswith(left) and prompt.endswith(right) and len(prompt) >= len(left) + len(right):
            return True, prompt[len(left):len(prompt) - len(right)]
        return False, prompt
    if prompt.endswith(style_text):
        rest = prompt[:len(prompt) - len(style_text)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def extract_styles(prompt: str, negative_prompt: str,
                   styles: list[PromptStyle]) -> tuple[list[str], str, str]:
    """(style names found, prompt and negative prompt without them): A1111's extract_styles_from_prompt,
    taking the last-applied style off first."""
    found: list[str] = []
    candidates = [s for s in styles if s.prompt or s.negative_prompt]
    while True:
        for style in candidates:
            ok_positive, positive = _extract_text(style.prompt, prompt)
            ok_negative, negative = _extract_text(style.negative_prompt, negative_prompt)
            if ok_positive and ok_negative:
                prompt, negative_prompt = positive, negative
                found.append(style.name)
                candidates.remove(style)
                break
        else:
            return list(reversed(found)), prompt, negative_prompt


class StyleDatabase:
    """styles.csv, read again whenever the file changes (so an edit outside the app shows up)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._styles: dict[str, PromptStyle] = {}

    @property
    def styles(self) -> dict[str, PromptStyle]:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                self._stamp, self._styles = None, {}
                return {}
            if stamp != self._stamp:
                self._styles, self._stamp = self._read(), stamp
            return dict(self._styles)

    def names(self) -> list[str]:
        return list(self.styles)

    def _read(self) -> dict[str, PromptStyle]:
        styles: dict[str, PromptStyle] = {}
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                for row in csv.DictReader(handle, skipinitialspace=True):
                    name = (row.get("name") or "").strip()
                    if not name:
                        continue
                    prompt = row.get("prompt") if "prompt" in row else row.get("text")  # A1111's old "text"
                    styles[name] = PromptStyle(name, prompt or "", row.get("negative_prompt") or "")
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            log.warning("Cannot read styles from %s: %s", self.path, error)
        return styles

    def resolve(self, names: list[str] | tuple[str, ...]) -> tuple[list[PromptStyle], list[str]]:
        """(the styles named, in order; the names not in the file)."""
        known = self.styles
        return [known[n] for n in names if n in known], [n for n in names if n not in known]

    def apply(self, prompt: str, negative_prompt: str,
              names: list[str] | tuple[str, ...]) -> tuple[str, str, list[str]]:
        """(styled prompt, styled negative prompt, notices for unknown names: A1111 skips them silently)."""
        styles, unknown = self.resolve(names)
        prompt, negative_prompt = apply_styles(prompt, negative_prompt, styles)
        notices = [f"Style {name!r} is not in {self.path.name}; skipped" for name in unknown]
        return prompt, negative_prompt, notices

    def save(self, style: PromptStyle) -> None:
        """Add or replace one style (A1111's "save style" button), keeping a .bak of the previous file."""
        styles = self.styles
        styles[style.name] = style
        with self._lock:
            if self.path.exists():
                self.path.with_suffix(self.path.suffix + ".bak").write_bytes(self.path.read_bytes())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["name", "prompt", "negative_prompt"])
                writer.writeheader()
                for item in styles.values():
                    writer.writerow({"name": item.name, "prompt": item.prompt,
                                     "negative_prompt": item.negative_prompt})
            self._stamp = None
