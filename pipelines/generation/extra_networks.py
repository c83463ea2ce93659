"""A1111's extra-network tags: `<lora:name:weight>` anywhere in a prompt, taken out before the text is encoded.

    <lora:name>                      weight 1 for the text encoder and the UNet
    <lora:name:0.7>                  0.7 for both
    <lora:name:0.5:1.0>              text encoder 0.5, UNet 1.0
    <lora:name:te=0.5:unet=1.0>      the same, named (A1111's named arguments)
    <lyco:name:...>                  an alias of lora (A1111 registers it for LyCORIS files)

A1111's `extra_networks.parse_prompt`: every `<word:args>` tag is removed from the text (the text around it
is left as it is); args split at ':'. Tags of other kinds (hypernet, ...) are removed too and reported, as
A1111 warns "Skipping unknown extra network".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipelines.fields import RequestError
from pipelines.models.embeddings import expand_embedding_tokens
from pipelines.models.lora import ActiveLora, LoraError

EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")  # A1111's re_extra_net
LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class LoraRef:
    """One tag: the network's name as written, its weights, the tag text, and its kind ("lora", or another
    extra-network kind this engine does not apply)."""

    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0
    tag: str = ""
    kind: str = "lora"

    @property
    def is_lora(self) -> bool:
        return self.kind in LORA_KINDS


def extract_extra_networks(prompt: str, field: str = "prompt") -> tuple[str, list[LoraRef]]:
    """(the prompt without its tags, the tags in order). A weight that is not a number raises RequestError
    naming the tag (A1111 fails there too, with a bare ValueError)."""
    refs: list[LoraRef] = []

    def take(match: re.Match) -> str:
        refs.append(_ref(match.group(1).lower(), match.group(2), match.group(0), field))
        return ""

    return EXTRA_NETWORK_TAG.sub(take, prompt), refs


def _ref(kind: str, args: str, tag: str, field: str) -> LoraRef:
    items = args.split(":")
    positional = [item for item in items if "=" not in item]
    named = dict(item.split("=", 1) for item in items if "=" in item)
    name = positional[0].strip() if positional else ""
    if kind not in LORA_KINDS:
        return LoraRef(name, tag=tag, kind=kind)
    if not name:
        raise RequestError(field, f"{tag}: the tag names no network")
    te = _weight(positional[1], tag, field) if len(positional) > 1 else 1.0
    te = _weight(named["te"], tag, field) if "te" in named else te
    unet = _weight(positional[2], tag, field) if len(positional) > 2 else te
    unet = _weight(named["unet"], tag, field) if "unet" in named else unet
    return LoraRef(name, te, unet, tag, kind)


def _weight(text: str, tag: str, field: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise RequestError(field, f"{tag}: {text.strip()!r} is not a number (write <lora:name:0.8>)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(field, f"{tag}: the weight must be a finite number")
    return value


def lora_tag(name: str, weight: float = 1.0) -> str:
    """The tag the extra-networks panel inserts (A1111's default multiplier is 1)."""
    return f"<lora:{name}:{weight:g}>"


@dataclass
class NetworkRun:
    """What a run's extra networks change: the texts the encoder gets (tags out, embedding names written as
    their tokens), the infotext keys, and notices."""

    prompt: str
    negative_prompt: str
    params: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def activate_networks(models: Any, pipe: Any, prompt: str, negative_prompt: str) -> NetworkRun:
    """Steps of one run, before its prompts are encoded:
    1. take the tags out of both prompts (those in the negative prompt are not applied, as in A1111);
    2. find each LoRA by name (a missing one: a notice, the run goes on, as A1111);
    3. put exactly these LoRAs on the model at their weights (cached adapters reused, others taken off);
    4. load the embeddings either prompt names and write their names as tokens;
    5. the infotext's "Lora hashes" and "TI hashes" (A1111's form: "name: hash, name: hash").
    A file that is not a LoRA for this model raises RequestError("prompt") naming the file."""
    text, refs = extract_extra_networks(prompt)
    negative_text, negative_refs = extract_extra_networks(negative_prompt, "negative_prompt")
    run = NetworkRun(text, negative_text)
    if negative_refs:
        run.notices.append(f"{', '.join(r.tag for r in negative_refs)}: extra networks in the negative prompt "
                           f"are not applied; removed from its text")
    loras = getattr(models, "loras", None)
    active: list[ActiveLora] = []
    for ref in refs:
        if not ref.is_lora:
            run.notices.append(f"{ref.tag}: {ref.kind!r} extra networks are not supported; skipped")
            continue
        found = loras.find(ref.name) if loras is not None else None
        if found is None:
            where = ", ".join(str(d) for d in loras.dirs) if loras is not None else "no LoRA folder"
            run.notices.append(f"LoRA not found: {ref.name!r} (no such file in {where}); {ref.tag} skipped")
            continue
        active.append(ActiveLora(found, ref.te_weight, ref.unet_weight, loras.short_hash(found), ref.name))
    if loras is not None:
        try:
            run.notices += loras.apply(pipe, active)
        except LoraError as error:  # name the loaded model's family: the usual cause is a LoRA for another one
            family = getattr(getattr(getattr(models, "current", None), "components", None), "family", None)
            where = f" (the loaded model is {family.label})" if family is not None else ""
            raise RequestError("prompt", f"{error}{where}") from None
    hashes = {a.mentioned_name.replace(":", "").replace(",", ""): a.short_hash for a in active}
    if hashes:
        run.params["Lora hashes"] = ", ".join(f"{name}: {digest}" for name, digest in hashes.items())
    embeddings = getattr(models, "embeddings", None)
    used = embeddings.apply(pipe, [text, negative_text]) if embeddings is not None else []
    if used:
        run.params["TI hashes"] = ", ".join(f"{e.name}: {embeddings.short_hash(e)}" for e in used)
        run.prompt = expand_embedding_tokens(pipe.tokenizer, text)
        run.negative_prompt = expand_embedding_tokens(pipe.tokenizer, negative_text)
    return run
