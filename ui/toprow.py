"""The row above the sub-tabs: prompt, negative prompt and the Generate / Interrupt / Skip buttons."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui.token_counter import build_counter


@dataclass
class Toprow:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    prompt_counter: gr.HTML | None = None  # A1111's "12/75" token counters (ui.token_counter)
    negative_counter: gr.HTML | None = None


def build_toprow() -> Toprow:
    with gr.Row(elem_id="img2img_toprow", equal_height=False):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", elem_id="img2img_prompt", lines=3, max_lines=12,
                                placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, "
                                            "Esc to interrupt)")
            prompt_counter = build_counter("img2img_token_counter")
            negative = gr.Textbox(label="Negative prompt", elem_id="img2img_neg_prompt", lines=2,
                                  max_lines=12, placeholder="Negative prompt\n(Press Ctrl+Enter to generate)")
            negative_counter = build_counter("img2img_negative_token_counter")
        with gr.Column(scale=1, min_width=180):
            generate = gr.Button("Generate", variant="primary", elem_id="img2img_generate", size="lg")
            with gr.Row():
                interrupt = gr.Button("Interrupt", variant="stop", elem_id="img2img_interrupt", size="sm")
                skip = gr.Button("Skip", elem_id="img2img_skip", size="sm")
    return Toprow(prompt, negative, generate, interrupt, skip, prompt_counter, negative_counter)


# Keyboard shortcuts as A1111's: Ctrl/Cmd+Enter generates, Alt+Enter skips, Esc interrupts (while a prompt
# box has the focus). Run once when the page loads.
SHORTCUTS_JS = """
document.addEventListener('keydown', (e) => {
  const box = e.target.closest && e.target.closest('#img2img_prompt, #img2img_neg_prompt');
  if (!box) return;
  const click = (id) => { const b = document.getElementById(id); if (b) { e.preventDefault(); b.click(); } };
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) click('img2img_generate');
  else if (e.key === 'Enter' && e.altKey) click('img2img_skip');
  else if (e.key === 'Escape') click('img2img_interrupt');
});
"""
