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


def build_toprow(prefix: str = "img2img") -> Toprow:
    """`prefix`: the tab's elem_id prefix (A1111's img2img_... / txt2img_...)."""
    with gr.Row(elem_id=f"{prefix}_toprow", equal_height=False):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", elem_id=f"{prefix}_prompt", lines=3, max_lines=12,
                                placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, "
                                            "Esc to interrupt)")
            prompt_counter = build_counter(f"{prefix}_token_counter")
            negative = gr.Textbox(label="Negative prompt", elem_id=f"{prefix}_neg_prompt", lines=2,
                                  max_lines=12, placeholder="Negative prompt\n(Press Ctrl+Enter to generate)")
            negative_counter = build_counter(f"{prefix}_negative_token_counter")
        with gr.Column(scale=1, min_width=180):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{prefix}_generate", size="lg")
            with gr.Row():
                interrupt = gr.Button("Interrupt", variant="stop", elem_id=f"{prefix}_interrupt", size="sm")
                skip = gr.Button("Skip", elem_id=f"{prefix}_skip", size="sm")
    return Toprow(prompt, negative, generate, interrupt, skip, prompt_counter, negative_counter)


# Keyboard shortcuts as A1111's: Ctrl/Cmd+Enter generates, Alt+Enter skips, Esc interrupts (while a prompt
# box has the focus). Run once when the page loads.
SHORTCUTS_JS = """
document.addEventListener('keydown', (e) => {
  const box = e.target.closest &&
    e.target.closest('#img2img_prompt, #img2img_neg_prompt, #txt2img_prompt, #txt2img_neg_prompt');
  if (!box) return;
  const tab = box.id.split('_')[0];  // the prompt's own tab: img2img or txt2img
  const click = (id) => { const b = document.getElementById(id); if (b) { e.preventDefault(); b.click(); } };
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) click(tab + '_generate');
  else if (e.key === 'Enter' && e.altKey) click(tab + '_skip');
  else if (e.key === 'Escape') click(tab + '_interrupt');
});
"""
