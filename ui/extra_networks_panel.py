"""The extra-networks panel (A1111's "Lora" and "Textual Inversion" tabs): a searchable list of the files;
clicking one puts its tag into the prompt (`<lora:name:1>`, or the embedding's name), clicking it again takes
it out, as A1111's cards do. 🔄 reads the folders again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.generation.extra_networks import lora_tag
from pipelines.models.embeddings import is_sdxl, model_width

SEPARATOR = " "  # A1111's extra_networks_add_text_separator


@dataclass
class ExtraNetworksPanel:
    lora_search: gr.Textbox
    loras: gr.Dataset
    embedding_search: gr.Textbox
    embeddings: gr.Dataset
    refresh: gr.Button
    summary: gr.Markdown


# 1. Pure helpers ------------------------------------------------------------------------------------------
def lora_rows(models: Any, search: str = "") -> list[list[str]]:
    """[[name, alias or "", sd version]] of the LoRA files whose name or alias contains `search`."""
    needle = (search or "").strip().casefold()
    return [[f.name, f.alias if f.alias != f.name else "", f.sd_version] for f in models.loras.files
            if needle in f.name.casefold() or needle in f.alias.casefold()]


def embedding_rows(models: Any, search: str = "") -> list[list[str]]:
    """[[name, "n vectors, width w"]] of the embeddings (those for another model's width are marked)."""
    needle = (search or "").strip().casefold()
    try:
        components = models.current.components
        width, sdxl = model_width(components), is_sdxl(components)  # SDXL: its second encoder's 1280
    except Exception:  # noqa: BLE001 - no model loaded: list them all unmarked
        width, sdxl = None, False
    usable, skipped = models.embeddings.listing(width, sdxl)
    rows = [[e.name, f"{e.count} vectors"] for e in usable]
    rows += [[e.name, f"{e.count} vectors, width {e.shape}: not for this model"] for e in skipped]
    return sorted((r for r in rows if needle in r[0].casefold()), key=lambda r: r[0].casefold())


def toggle_lora(prompt: str, name: str, weight: float = 1.0) -> str:
    """Add `<lora:name:weight>` to the prompt, or take it out if the prompt already has a tag for `name`."""
    pattern = re.compile(rf"\s*<(?:lora|lyco):{re.escape(name)}(?::[^>]*)?>", re.IGNORECASE)
    if pattern.search(prompt or ""):
        return pattern.sub("", prompt, count=1)
    return f"{prompt}{SEPARATOR}{lora_tag(name, weight)}" if prompt else lora_tag(name, weight)


def toggle_word(prompt: str, word: str) -> str:
    """Add an embedding's name to the prompt, or take it out if it is there as a word."""
    pattern = re.compile(rf"(?:^|,?\s*)(?<![\w-]){re.escape(word)}(?![\w-])", re.IGNORECASE)
    if pattern.search(prompt or ""):
        return pattern.sub("", prompt, count=1).strip()
    return f"{prompt}{SEPARATOR}{word}" if prompt else word


def summary_text(models: Any) -> str:
    lora_dirs = ", ".join(f"`{d}`" for d in models.loras.dirs)
    embedding_dirs = ", ".join(f"`{d}`" for d in models.embeddings.dirs)
    unreadable = [e.name for e in models.embeddings.unreadable]
    text = (f"{len(models.loras.files)} LoRA in {lora_dirs}; {len(models.embeddings.embeddings)} embeddings in "
            f"{embedding_dirs}. Click a name to put it into the prompt (again: take it out).")
    return text + (f" Not embeddings: {', '.join(unreadable)}." if unreadable else "")


# 2. Widgets -----------------------------------------------------------------------------------------------
def build_extra_networks_panel(models: Any, prefix: str = "img2img") -> ExtraNetworksPanel:
    with gr.Accordion("Extra networks", open=False, elem_id=f"{prefix}_extra_networks"):
        with gr.Row():
            summary = gr.Markdown(summary_text(models), elem_id=f"{prefix}_extra_networks_summary")
            refresh = gr.Button("🔄", elem_id=f"{prefix}_extra_networks_refresh", elem_classes=["tool"], scale=0)
        with gr.Tabs(elem_id=f"{prefix}_extra_networks_tabs"):
            with gr.Tab("Lora", elem_id=f"{prefix}_lora_tab"):
                lora_search = gr.Textbox(show_label=False, placeholder="Search...", elem_id=f"{prefix}_lora_search")
                loras = gr.Dataset(components=["text", "text", "text"], headers=["Name", "Alias", "Version"],
                                   samples=lora_rows(models), label="Lora",
                                   elem_id=f"{prefix}_lora_cards", samples_per_page=30)
            with gr.Tab("Textual Inversion", elem_id=f"{prefix}_ti_tab"):
                embedding_search = gr.Textbox(show_label=False, placeholder="Search...",
                                              elem_id=f"{prefix}_ti_search")
                embeddings = gr.Dataset(components=["text", "text"], headers=["Name", "Vectors"],
                                        samples=embedding_rows(models), label="Textual Inversion",
                                        elem_id=f"{prefix}_ti_cards", samples_per_page=30)
    return ExtraNetworksPanel(lora_search, loras, embedding_search, embeddings, refresh, summary)


def wire_extra_networks(panel: ExtraNetworksPanel, models: Any, prompt: gr.Textbox) -> None:
    def add_lora(row: list, text: str):
        return toggle_lora(text, row[0]) if row and row[0] else gr.skip()

    def add_embedding(row: list, text: str):
        return toggle_word(text, row[0]) if row and row[0] else gr.skip()

    def show_loras(search: str):
        return gr.Dataset(samples=lora_rows(models, search))

    def show_embeddings(search: str):
        return gr.Dataset(samples=embedding_rows(models, search))

    def refresh_extra_networks(lora_search: str, embedding_search: str):
        models.loras.refresh()
        models.embeddings.refresh()
        return show_loras(lora_search), show_embeddings(embedding_search), summary_text(models)

    panel.loras.click(add_lora, inputs=[panel.loras, prompt], outputs=prompt, queue=False)
    panel.embeddings.click(add_embedding, inputs=[panel.embeddings, prompt], outputs=prompt, queue=False)
    panel.lora_search.change(show_loras, inputs=panel.lora_search, outputs=panel.loras, queue=False)
    panel.embedding_search.change(show_embeddings, inputs=panel.embedding_search, outputs=panel.embeddings,
                                  queue=False)
    panel.refresh.click(refresh_extra_networks, inputs=[panel.lora_search, panel.embedding_search],
                        outputs=[panel.loras, panel.embeddings, panel.summary], queue=False)
