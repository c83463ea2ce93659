"""Bounded work in the engine and below it (issue 10): the limits and their flags, the prompt's token bound and
bounded encoder batches, latent upscale's source, seeds and prompt text, a full disk, leftover temp files,
progress for a run without sampling steps, options."""

import errno
import os
import time

import pytest
import torch
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.fields import MAX_PROMPT_TOKENS, RequestError, ResizeMode
from pipelines.generation.conditioning import encode_conditioning
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io import outputs
from pipelines.launch_flags import parse_flags
from pipelines.limits import ImageBudget, Limits, latent_upscale_source
from pipelines.options import known_options


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def small_request(**changes):
    values = dict(init_image=Image.new("RGB", (64, 64), (90, 140, 200)), prompt="a lake", width=64, height=64,
                  steps=2, denoising_strength=0.5, seed=3, sampler_name="Euler", save_images=False)
    values.update(changes)
    return Img2ImgRequest(**values)


# -- the limits and their flags ---------------------------------------------------------------------------
def test_flags_set_the_limits_and_refuse_nonsense():
    limits = Limits.from_settings(parse_flags(["--api-max-body-mb", "2", "--max-image-pixels", "100",
                                               "--max-job-pixels", "7"]))
    assert (limits.max_body_bytes, limits.max_image_pixels, limits.max_job_pixels) == (2 * 2**20, 100, 7)
    assert Limits.from_settings(parse_flags([])) == Limits()
    with pytest.raises(SystemExit):
        parse_flags(["--max-image-pixels", "0"])


def test_the_image_budget_counts_per_image_and_per_request():
    budget = ImageBudget(Limits(max_image_pixels=100, max_request_pixels=150))
    budget.admit("a", (10, 10))
    with pytest.raises(RequestError, match="per request") as caught:
        budget.admit("b", (10, 6))
    assert caught.value.field == "b"
    with pytest.raises(RequestError, match="11x10"):
        ImageBudget(Limits(max_image_pixels=100)).admit("c", (11, 10))


def test_the_engine_refuses_a_ui_image_over_the_limit(tmp_path):
    strict = make_demo_engine(tmp_path)
    strict.limits = Limits(max_image_pixels=1000)
    with pytest.raises(RequestError, match="--max-image-pixels") as caught:
        strict.img2img(small_request())
    assert caught.value.field == "init_image"


# -- prompts ------------------------------------------------------------------------------------------
class WordTokenizer:
    """One token per word; takes one text or a list, as CLIP's tokenizer does."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 2  # CLIP ViT-L pads with its end token

    def __call__(self, text, **kwargs):
        if isinstance(text, list):
            return {"input_ids": [[3] * len(t.split()) for t in text]}
        return {"input_ids": [3] * len(text.split())}

    def get_vocab(self):
        return {}


class RecordingEncoder:
    def __init__(self):
        self.batches = []

    def __call__(self, ids, **kwargs):
        self.batches.append(len(ids))
        return (torch.zeros(len(ids), ids.shape[1], 4),)


def test_prompts_are_encoded_one_chunk_position_at_a_time():
    """Memory stays bounded by the chunk, not the prompt: each encoder pass holds one chunk per distinct text."""
    encoder = RecordingEncoder()
    prompt = " ".join(["w"] * MAX_PROMPT_TOKENS)  # 20 chunks, the most allowed
    conditioning = encode_conditioning(WordTokenizer(), encoder, prompt, "", 4, torch.device("cpu"))
    assert conditioning.positive.at(0).shape == (1, 77 * 20, 4)
    assert max(encoder.batches) == 1 and len(encoder.batches) >= 20


def test_a_prompt_over_the_token_limit_names_its_field():
    with pytest.raises(RequestError, match="more than 20 chunks") as caught:
        encode_conditioning(WordTokenizer(), RecordingEncoder(), "a", " ".join(["w"] * 1501), 4, "cpu")
    assert caught.value.field == "negative_prompt"


@pytest.mark.parametrize("changes, field, words", [
    ({"prompt": "x" * 40_000}, "prompt", "40000 characters"),
    ({"negative_prompt": "bad \udfff"}, "negative_prompt", "surrogate"),
    ({"seed": 2**64}, "seed", "-1..4294967295"),
    ({"subseed": 2**32}, "subseed", "-1..4294967295"),
    ({"n_iter": 101}, "n_iter", "1..100"),
])
def test_request_text_seeds_and_batch_count_are_bounded(changes, field, words):
    with pytest.raises(RequestError, match=words) as caught:
        small_request(**changes).validate()
    assert caught.value.field == field


def test_large_negative_seeds_still_mean_random():
    small_request(seed=-(2**70), subseed=-5).validate()


# -- latent upscale ---------------------------------------------------------------------------------------
def test_latent_upscale_source_is_bounded_to_twice_the_target():
    image, notice = latent_upscale_source(Image.new("RGB", (1024, 512)), 64, 64)
    assert image.size == (128, 64) and "1024x512" in notice and "128x64" in notice
    small = Image.new("RGB", (100, 90))
    assert latent_upscale_source(small, 64, 64) == (small, None)  # within 2x: encoded as it is (A1111)


def test_latent_upscale_of_a_huge_source_encodes_a_bounded_one(engine):
    result = engine.img2img(small_request(init_image=Image.new("RGB", (1024, 1024), (10, 200, 90)),
                                          resize_mode=ResizeMode.LATENT_UPSCALE, steps=1))
    assert result.images[0].size == (64, 64)
    assert any("scaled down to 128x128" in notice for notice in result.notices), result.notices


# -- progress without sampling steps -----------------------------------------------------------------------
def test_a_run_without_sampling_steps_still_reports_progress(engine):
    updates = []
    result = engine.img2img(small_request(sampler_name="DDIM", steps=20, denoising_strength=0.04, n_iter=2),
                            updates.append)
    assert len(result.images) == 3 and result.index_of_first_image == 1  # A1111's grid, then the 2 images
    assert [(u.job, u.fraction) for u in updates] == [(0, 0.5), (1, 1.0)]


# -- saving ------------------------------------------------------------------------------------------------
def test_a_full_disk_keeps_the_finished_images(engine, monkeypatch):
    def disk_full(image, infotext, path, *args):
        with open(path, "wb") as half_written:
            half_written.write(b"\x89PNG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "_encode", disk_full)
    result = engine.img2img(small_request(save_images=True, n_iter=2))
    assert len(result.images) == 3 and result.paths == []  # the grid (not saved either) and the 2 images
    assert [n for n in result.notices if "saving failed" in n and "disk is full" in n]
    leftovers = [name for _, _, names in os.walk(engine.outputs_root) for name in names if name.startswith(".")]
    assert leftovers == []


def test_leftover_temp_and_claim_files_are_swept(tmp_path):
    day = tmp_path / "img2img-images" / "2026-01-01"
    day.mkdir(parents=True)
    old = [day / ".tmp-abc.png", day / ".00007.claim"]
    fresh, kept = day / ".tmp-new.png", day / "00001-5.png"
    for path in [*old, fresh, kept]:
        path.write_bytes(b"x")
    for path in [*old, kept]:
        os.utime(path, (time.time() - 3600,) * 2)
    assert outputs.sweep_leftovers(tmp_path) == 2
    assert sorted(p.name for p in day.iterdir()) == sorted([fresh.name, kept.name])


# -- options ---------------------------------------------------------------------------------------------
def test_only_known_options_are_kept():
    known, notices = known_options({"jpeg_quality": 90, "z" * 1000: 1})
    assert known == {"jpeg_quality": 90}
    assert len(notices) == 1 and "1002 characters" in notices[0] and len(notices[0]) < 200
