"""Textual-inversion embeddings: A1111 and diffusers files read safely, a name in the prompt puts the file's
vectors in the token rows it occupies, "TI hashes" in the infotext. On the tiny demo model."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from network_files import (
    embedding_vectors,
    write_a1111_embedding,
    write_diffusers_embedding,
    write_safetensors_embedding,
)
from PIL import Image
from safetensors.torch import save_file

from pipelines.generation.extra_networks import activate_networks
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.models.embeddings import (
    EmbeddingError,
    embedding_token_lengths,
    expand_embedding_tokens,
    name_pattern,
    read_embedding,
)


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    folder = data / "embeddings"
    vectors = {"EasyNeg": embedding_vectors(3, seed=3), "single": embedding_vectors(1, seed=4),
               "style": embedding_vectors(2, seed=5), "diff": embedding_vectors(1, seed=6)}
    write_a1111_embedding(folder / "EasyNeg.pt", vectors["EasyNeg"])
    write_safetensors_embedding(folder / "sub" / "single.safetensors", vectors["single"])
    write_a1111_embedding(folder / "style.pt", vectors["style"])  # a name that is also a CLIP word
    write_diffusers_embedding(folder / "diff.bin", vectors["diff"][0])
    write_a1111_embedding(folder / "wide.pt", torch.zeros(2, 768))  # for SD 1.x, not this 32-wide model
    save_file({"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)}, str(folder / "xl.safetensors"))
    with open(folder / "evil.pt", "wb") as handle:
        pickle.dump(_Evil(), handle)
    (folder / "notes.txt").write_text("not an embedding")
    return make_demo_engine(data), folder, vectors


def test_formats_are_read_and_code_is_refused(setup):
    _, folder, vectors = setup
    a1111 = read_embedding(folder / "EasyNeg.pt")
    assert torch.equal(a1111.vectors, vectors["EasyNeg"]) and a1111.step == 500 and a1111.count == 3
    assert a1111.sd_checkpoint == "abcdef1234" and a1111.shape == vectors["EasyNeg"].shape[1]
    assert torch.equal(read_embedding(folder / "sub" / "single.safetensors").vectors, vectors["single"])
    assert torch.equal(read_embedding(folder / "diff.bin").vectors, vectors["diff"])
    assert read_embedding(folder / "xl.safetensors").shape == 1280
    with pytest.raises(EmbeddingError, match="refused for safety"):
        read_embedding(folder / "evil.pt")


def test_listing_splits_usable_and_skipped_by_the_model_width(setup):
    engine, _, _ = setup
    library = engine.models.embeddings
    usable, skipped = library.listing(32)
    assert [e.name for e in usable] == ["diff", "EasyNeg", "single", "style"]
    assert sorted(e.name for e in skipped) == ["wide", "xl"]
    assert [e.name for e in library.unreadable] == ["evil"]


@pytest.mark.parametrize("text, found", [
    ("easyneg, a cat", ["easyneg"]),
    ("(EasyNeg:1.2)", ["EasyNeg"]),
    ("easynegative", []),  # a longer word
    ("easyneg2", ["easyneg"]),  # digits are their own CLIP tokens (A1111 matches here too)
    ("noteasyneg", []),
    ("easyneg_v2", ["easyneg"]),
])
def test_names_match_where_a1111_token_matching_would(text, found):
    pattern = name_pattern(["EasyNeg", "style"])
    assert [m.group(0) for m in pattern.finditer(text)] == found


def test_a_name_in_the_prompt_puts_its_vectors_in_the_rows_it_occupies(setup):
    engine, _, vectors = setup
    pipe = engine.models.pipeline("img2img")
    run = activate_networks(engine.models, pipe, "a cat, EasyNeg, style", "single")
    assert run.params["TI hashes"].startswith("EasyNeg: ")
    ids = pipe.tokenizer(run.prompt, add_special_tokens=False)["input_ids"]
    plain = pipe.tokenizer("a cat,", add_special_tokens=False)["input_ids"]
    assert ids[:len(plain)] == plain
    rows = pipe.text_encoder.get_input_embeddings()(torch.tensor(ids))
    # "a cat ," then EasyNeg's 3 vectors, ",", then style's 2 vectors: one token slot per vector
    assert len(ids) == len(plain) + 3 + 1 + 2
    assert torch.allclose(rows[len(plain):len(plain) + 3], vectors["EasyNeg"])
    assert torch.allclose(rows[len(plain) + 4:], vectors["style"])
    negative_ids = pipe.tokenizer(run.negative_prompt, add_special_tokens=False)["input_ids"]
    assert torch.allclose(pipe.text_encoder.get_input_embeddings()(torch.tensor(negative_ids)), vectors["single"])
    # the chunker keeps an embedding's vectors together: the lengths start at each embedding's first token
    length = embedding_token_lengths(pipe.tokenizer)
    assert [length(ids, i) for i in range(len(ids))] == [0] * len(plain) + [3, 0, 0, 0, 2, 0]
    # expanding again changes nothing; text without names is untouched
    assert expand_embedding_tokens(pipe.tokenizer, run.prompt) == run.prompt
    assert expand_embedding_tokens(pipe.tokenizer, "a dog") == "a dog"


def image():
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8"), "RGB")


def run(engine, prompt, negative=""):
    return engine.img2img(Img2ImgRequest(init_image=image(), prompt=prompt, negative_prompt=negative, width=64,
                                         height=64, steps=4, seed=3, save_images=False))


def test_an_embedding_changes_the_picture_and_is_recorded_as_ti_hashes(setup):
    engine, folder, _ = setup
    plain = np.asarray(run(engine, "a cat, easyneg").images[0])
    assert np.array_equal(plain, np.asarray(run(engine, "a cat, EasyNeg").images[0]))  # case-insensitive
    other = np.asarray(run(engine, "a cat, style").images[0])
    assert not np.array_equal(plain, other)
    result = run(engine, "a cat, style", negative="diff")
    parsed = parse_infotext(result.infotexts[0])
    style_hash = hashlib.sha256((folder / "style.pt").read_bytes()).hexdigest()[:12]
    diff_hash = hashlib.sha256((folder / "diff.bin").read_bytes()).hexdigest()[:12]
    assert parsed["TI hashes"] == f"style: {style_hash}, diff: {diff_hash}"
    assert parsed["Prompt"] == "a cat, style" and parsed["Negative prompt"] == "diff"
    assert "TI hashes" not in parse_infotext(run(engine, "a cat").infotexts[0])
