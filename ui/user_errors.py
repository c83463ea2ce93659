"""Errors shown in the page: a user error is one line in the server log and no traceback (Gradio prints one
for every gr.Error unless told not to); a bug keeps its traceback, logged once."""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("ui")


def refuse(message: str) -> gr.Error:
    """The gr.Error to raise for something the user can fix (a bad value, a missing or broken model)."""
    log.warning("UI: %s", " ".join(message.split())[:500])
    return gr.Error(message, print_exception=False)


def failure(message: str, exc: BaseException) -> gr.Error:
    """The gr.Error to raise for a bug: the traceback goes to the log here, once."""
    log.error("UI: %s", message, exc_info=exc)
    return gr.Error(message, print_exception=False)
