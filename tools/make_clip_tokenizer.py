"""Regenerate the CLIP BPE tokenizer files shipped in models/configs/clip-tokenizer/.

Source: bpe_simple_vocab_16e6.txt.gz (OpenAI CLIP's vocabulary, shipped in the PyPI package
clip-anytorch). Vocabulary = 256 byte-chars, the same with '</w>', the first 48,894 merges joined,
then <|startoftext|> and <|endoftext|>: 49,408 tokens. Run once; the output is committed so loading a
checkpoint never needs the network.

    python tools/make_clip_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz
"""

import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "models" / "configs" / "clip-tokenizer"
MERGE_COUNT = 49152 - 256 - 2  # 48,894


def bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP's reversible byte -> printable-character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def main(source: str) -> None:
    lines = gzip.open(source).read().decode("utf-8").split("\n")
    merges = lines[1 : MERGE_COUNT + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    (OUT / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": {**special, "content": "<|startoftext|>"}, "eos_token": special,
        "pad_token": "<|endoftext|>", "unk_token": special}, indent=2))
    (OUT / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "errors": "replace", "add_prefix_space": False}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
