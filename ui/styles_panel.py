"""The Styles row under the prompts (A1111's): a multi-select of the styles in styles.csv, applied to the
prompts when Generate runs; 📋 writes the chosen styles into the prompt boxes and clears the choice (A1111's
"apply styles to prompt"); 💾 saves the current prompts as a style; 🔄 reads styles.csv again."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipelines.io.styles import PromptStyle, StyleDatabase


@dataclass
class StylesRow:
    dropdown: gr.Dropdown
    apply: gr.Button
    refresh: gr.Button
    save_name: gr.Textbox
    save: gr.Button


def apply_to_prompts(styles: StyleDatabase, names: list[str] | None, prompt: str,
                     negative_prompt: str) -> tuple[str, str, list[str]]:
    """The prompts with the chosen styles written in, and the (now empty) choice."""
    prompt, negative_prompt, notices = styles.apply(prompt or "", negative_prompt or "", list(names or []))
    for notice in notices:
        gr.Warning(notice)
    return prompt, negative_prompt, []


def build_styles_row(styles: StyleDatabase, prefix: str = "img2img") -> StylesRow:
    with gr.Row(elem_id=f"{prefix}_styles_row", equal_height=True):
        dropdown = gr.Dropdown(label="Styles", choices=styles.names(), value=[], multiselect=True,
                               elem_id=f"{prefix}_styles", scale=4)
        apply = gr.Button("📋", elem_id=f"{prefix}_style_apply", elem_classes=["tool"], scale=0)
        refresh = gr.Button("🔄", elem_id=f"{prefix}_styles_refresh", elem_classes=["tool"], scale=0)
        save_name = gr.Textbox(label="New style name", elem_id=f"{prefix}_style_name", scale=2)
        save = gr.Button("💾", elem_id=f"{prefix}_style_create", elem_classes=["tool"], scale=0)
    return StylesRow(dropdown, apply, refresh, save_name, save)


def wire_styles(row: StylesRow, styles: StyleDatabase, prompt: gr.Textbox, negative: gr.Textbox) -> None:
    def apply_styles(names: list[str], text: str, negative_text: str):
        return apply_to_prompts(styles, names, text, negative_text)

    def refresh_styles(names: list[str]):
        known = styles.names()
        return gr.Dropdown(choices=known, value=[n for n in names or [] if n in known])

    def save_style(name: str, text: str, negative_text: str, names: list[str]):
        if not (name or "").strip():
            gr.Warning("Type a name for the new style first")
            return gr.skip(), gr.skip()
        styles.save(PromptStyle(name.strip(), text or "", negative_text or ""))
        return gr.Dropdown(choices=styles.names(), value=list(names or [])), ""

    row.apply.click(apply_styles, inputs=[row.dropdown, prompt, negative], outputs=[prompt, negative, row.dropdown],
                    queue=False)
    row.refresh.click(refresh_styles, inputs=row.dropdown, outputs=row.dropdown, queue=False)
    row.save.click(save_style, inputs=[row.save_name, prompt, negative, row.dropdown],
                   outputs=[row.dropdown, row.save_name], queue=False)
