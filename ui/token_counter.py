"""A1111's token counters beside the prompt boxes ("12/75", "80/150"), updated as the user types.

The count is A1111's: emphasis markup removed, BREAK padding its chunk, the longest text of the prompt-editing
schedule at the Sampling steps slider's value, <lora:...> tags not counted. It runs on the server with the
loaded model's tokenizer (or the shipped CLIP tokenizer): tokenising only, never the model, never the job
queue (queue=False), the latest keystroke's count winning (trigger_mode="always_last").
"""

from __future__ import annotations

import functools
import html
from typing import Any, Callable

import gradio as gr

from pipelines.fields import EMPHASIS_MODES
from pipelines.generation.extra_networks import EXTRA_NETWORK_TAG
from pipelines.generation.prompt_chunks import DEFAULT_EMPHASIS, token_count

CHUNK_HINT = "tokens / capacity: each 75-token chunk is one CLIP pass; a chunk past 75 starts at the last comma"


def counter_html(tokenizer: Any, text: str | None, steps: Any = 20, emphasis: str | None = None) -> str:
    """The counter's HTML, e.g. <span class="token-counter">80/150</span>."""
    mode = emphasis if emphasis in EMPHASIS_MODES else DEFAULT_EMPHASIS
    try:
        steps = max(1, int(steps))
    except (TypeError, ValueError):
        steps = 20
    text = EXTRA_NETWORK_TAG.sub("", text or "")  # A1111 counts the prompt without its extra-network tags
    count, capacity = token_count(tokenizer, text, steps, mode)
    return f'<span class="token-counter" title="{html.escape(CHUNK_HINT)}">{count}/{capacity}</span>'


def build_counter(elem_id: str) -> gr.HTML:
    return gr.HTML(counter_html_empty(), elem_id=elem_id, elem_classes=["token-counter"], padding=False)


def counter_html_empty() -> str:
    return f'<span class="token-counter" title="{html.escape(CHUNK_HINT)}">0/75</span>'


def wire_token_counters(pairs: list[tuple[Any, Any]], steps: Any, tokenizer_of: Callable[[], Any],
                        emphasis: Any = None) -> None:
    """For each (prompt box, counter): recount on every change of the box, the steps or the emphasis mode."""
    extra = [steps] + ([emphasis] if emphasis is not None else [])
    for box, counter in pairs:
        def count(text, steps_value, emphasis_value=None):
            return counter_html(tokenizer_of(), text, steps_value, emphasis_value)

        for component in (box, *extra):
            component.change(count, inputs=[box, *extra], outputs=[counter], queue=False, show_progress="hidden",
                             trigger_mode="always_last", api_visibility="private")


def counter_tokenizer(models: Any) -> Any:
    """The loaded model's tokenizer (it knows the textual-inversion tokens added to it), else the shipped one."""
    try:
        return models.current.components.tokenizer
    except Exception:  # no model loaded (yet, or a load failed): counting still works
        return _shipped_tokenizer()


@functools.cache
def _shipped_tokenizer() -> Any:
    from pipelines.models.checkpoint_loader import shipped_tokenizer

    return shipped_tokenizer()
