"""Interrogate CLIP with tiny random BLIP and CLIP models saved in transformers format (no downloads)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
)

from pipelines.models.interrogate import (
    BLIP_SPEC,
    DEFAULT_CATEGORIES_DIR,
    PROJECT_ROOT,
    CaptionOptions,
    Interrogator,
    InterrogatorUnavailable,
    find_model_folder,
    load_categories,
)

IMAGE_SIZE = 32
FAST = CaptionOptions(num_beams=1, min_length=6, max_length=10)
BLIP_WORDS = "a picture of cat dog red blue sky tree house man woman sitting on the with and in".split()
CATEGORY_FILES = {
    "artists.txt": "Claude Monet\nKatsushika Hokusai\n\nFrida Kahlo\n",
    "flavors.top2.txt": "highly detailed\nsoft focus\nvibrant colors\nfilm grain\n",
    "mediums.txt": "an oil painting\na photograph\na pencil drawing\n",
}


def _tiny_blip(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)  # the app creates models/BLIP at start-up
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *BLIP_WORDS]
    vocab_file = folder.parent / "blip-vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]")
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=64, bos_token_id=vocab.index("[DEC]"),
                         sep_token_id=vocab.index("[SEP]"), eos_token_id=vocab.index("[SEP]"),
                         pad_token_id=0),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                           image_size=IMAGE_SIZE, patch_size=8),
        projection_dim=16)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _tiny_clip(folder: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(PROJECT_ROOT / "models" / "configs" / "clip-tokenizer")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                           image_size=IMAGE_SIZE, patch_size=8),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrogate")
    _tiny_blip(root / "BLIP")
    _tiny_clip(root / "CLIP")
    categories = root / "interrogate"
    categories.mkdir()
    for name, text in CATEGORY_FILES.items():
        (categories / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def image() -> Image.Image:
    gradient = Image.linear_gradient("L").resize((48, 40))
    return Image.merge("RGB", (gradient, gradient.rotate(90), Image.new("L", (48, 40), 90)))


def make(models: Path, **kwargs) -> Interrogator:
    kwargs.setdefault("caption_options", FAST)
    return Interrogator(models / "BLIP", models / "CLIP", models / "interrogate", **kwargs)


def direct_caption(models: Path, image: Image.Image, options: CaptionOptions) -> str:
    """What the BLIP model generates when called directly, the prompt cut off as A1111 does."""
    processor = BlipProcessor.from_pretrained(models / "BLIP", local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(models / "BLIP", local_files_only=True).eval()
    inputs = processor(images=image, text=options.prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, num_beams=options.num_beams, min_length=options.min_length,
                             max_length=options.max_length)
    text = processor.decode(ids[0], skip_special_tokens=True)
    assert text.startswith(options.prompt + " ")
    return text[len(options.prompt):].strip()


def direct_ranking(models: Path, image: Image.Image, texts: list[str], top_n: int = 1) -> list[str]:
    """The top-N texts by cosine similarity, computed with CLIPModel's own feature functions."""
    processor = CLIPProcessor.from_pretrained(models / "CLIP", local_files_only=True)
    model = CLIPModel.from_pretrained(models / "CLIP", local_files_only=True).eval()
    with torch.no_grad():
        image_features = model.get_image_features(**processor(images=image, return_tensors="pt"))
        tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
        text_features = model.get_text_features(**tokens)
    # transformers 5 returns an output object, earlier versions the tensor
    image_features = getattr(image_features, "pooler_output", image_features)
    text_features = getattr(text_features, "pooler_output", text_features)
    cosine = torch.nn.functional.cosine_similarity(text_features, image_features, dim=-1)
    assert cosine.topk(2).values[0] > cosine.topk(2).values[1]  # a clear winner, or the test proves nothing
    return [texts[i] for i in cosine.topk(top_n).indices]


def expected_result(models: Path, image: Image.Image, options: CaptionOptions = FAST) -> str:
    artist = direct_ranking(models, image, ["by Claude Monet", "by Katsushika Hokusai", "by Frida Kahlo"])
    flavors = direct_ranking(models, image, ["highly detailed", "soft focus", "vibrant colors", "film grain"],
                             top_n=2)
    medium = direct_ranking(models, image, ["an oil painting", "a photograph", "a pencil drawing"])
    return ", ".join([direct_caption(models, image, options), *artist, *flavors, *medium])


# 1. The result --------------------------------------------------------------------------------------------
def test_result_is_caption_then_best_line_of_each_category(models, image):
    result = make(models).interrogate(image)
    caption = direct_caption(models, image, FAST)
    assert caption and result.startswith(caption + ", ")
    terms = result[len(caption) + 2:].split(", ")
    assert len(terms) == 1 + 2 + 1  # artists, flavors.top2, mediums
    assert terms[0].startswith("by ") and terms[0][3:] in CATEGORY_FILES["artists.txt"].split("\n")
    assert set(terms[1:3]) <= {"highly detailed", "soft focus", "vibrant colors", "film grain"}
    assert terms[3] in {"an oil painting", "a photograph", "a pencil drawing"}
    assert result == expected_result(models, image)


def test_beam_search_caption_matches_blip_generate(models, image):
    options = CaptionOptions(num_beams=3, min_length=5, max_length=12)
    assert make(models, caption_options=options).caption(image) == direct_caption(models, image, options)


def test_the_most_similar_line_wins_when_the_text_embeddings_say_so(models, image):
    interrogator = make(models)
    natural = {m.category: m.text for m in interrogator.rank(image)}
    mediums = ("an oil painting", "a photograph", "a pencil drawing")
    chosen = next(text for text in mediums if text != natural["mediums"])
    # Rewrite the cached text embeddings: the chosen line points at the image, the others away from it.
    image_embedding = interrogator._image_embedding(*interrogator._clip, image)
    embeddings = torch.stack([image_embedding if text == chosen else -image_embedding for text in mediums])
    interrogator._text_embeddings[mediums] = embeddings
    ranked = {m.category: m for m in interrogator.rank(image)}
    assert ranked["mediums"].text == chosen
    assert ranked["mediums"].score == pytest.approx(1.0)
    assert ranked["artists"].text == f"by {natural['artists'].removeprefix('by ')}"  # others untouched


def test_return_ranks_and_non_rgb_images(models, image):
    result = make(models, return_ranks=True).interrogate(image.convert("RGBA"))
    terms = result.split(", ")[-4:]
    assert all(term.startswith("(") and term.endswith(")") for term in terms)
    text, score = terms[0][1:-1].rsplit(":", 1)
    assert text.startswith("by ") and 0.0 < float(score) <= 1.0
    assert make(models).interrogate(image.convert("L"))  # greyscale is converted, not rejected


def test_keeping_models_in_memory_gives_the_same_result(models, image):
    assert make(models, keep_models_in_memory=True).interrogate(image) == make(models).interrogate(image)


def test_skip_categories_and_top_n_larger_than_the_list(models, image, tmp_path):
    categories = tmp_path / "cats"
    shutil.copytree(models / "interrogate", categories)
    (categories / "mediums.txt").rename(categories / "mediums.top9.txt")
    interrogator = Interrogator(models / "BLIP", models / "CLIP", categories, caption_options=FAST,
                                skip_categories=("flavors",))
    matches = interrogator.rank(image)
    assert [m.category for m in matches] == ["artists"] + ["mediums"] * 3
    assert sorted(m.text for m in matches[1:]) == ["a pencil drawing", "a photograph", "an oil painting"]


# 2. Caching --------------------------------------------------------------------------------------------
def test_text_embeddings_are_computed_once_per_loaded_model(models, image):
    interrogator = make(models)
    clip_model, _ = interrogator._load_clip()
    calls = []
    clip_model.text_model.register_forward_hook(lambda *args: calls.append(1))
    first = interrogator.interrogate(image)
    assert len(calls) == 3  # one batch per category file
    assert interrogator.interrogate(image) == first
    assert len(calls) == 3  # the second call reused the cache
    assert interrogator._load_clip()[0] is clip_model  # and the model itself
    interrogator.unload()
    assert interrogator._blip is None and interrogator._clip is None and not interrogator._text_embeddings
    assert interrogator.interrogate(image) == first


def test_loading_is_lazy(models, image, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(BlipForConditionalGeneration, "from_pretrained", refuse)
    monkeypatch.setattr(CLIPModel, "from_pretrained", refuse)
    interrogator = make(models)
    assert interrogator.available() == (True, "ready")
    with pytest.raises(AssertionError, match="weights loaded"):
        interrogator.interrogate(image)


# 3. Missing models -------------------------------------------------------------------------------------
def test_missing_blip_folder(models, image, tmp_path):
    interrogator = Interrogator(tmp_path / "BLIP", models / "CLIP", models / "interrogate")
    ok, reason = interrogator.available()
    assert not ok
    assert f"BLIP captioning model in {tmp_path / 'BLIP'}/" in reason
    for expected in ("config.json", "model.safetensors", "preprocessor_config.json", "vocab.txt",
                     "Salesforce/blip-image-captioning-base", "does not exist"):
        assert expected in reason
    with pytest.raises(InterrogatorUnavailable) as error:
        interrogator.interrogate(image)
    assert str(error.value) == reason


def test_incomplete_clip_folder(models, tmp_path):
    clip = tmp_path / "CLIP"
    shutil.copytree(models / "CLIP", clip)
    (clip / "model.safetensors").unlink()
    ok, reason = Interrogator(models / "BLIP", clip, models / "interrogate").available()
    assert not ok
    assert f"a CLIP model in {clip}/" in reason and "openai/clip-vit-large-patch14" in reason
    assert reason.endswith("lacks model.safetensors (or pytorch_model.bin).")


def test_a1111_blip_checkpoint_is_explained_and_sub_folders_are_found(models, tmp_path):
    blip = tmp_path / "BLIP"
    blip.mkdir()
    (blip / "model_base_caption_capfilt_large.pth").write_bytes(b"not a real checkpoint")
    ok, reason = Interrogator(blip, models / "CLIP", models / "interrogate").available()
    assert not ok and "model_base_caption_capfilt_large.pth is an original, non-transformers" in reason
    shutil.copytree(models / "BLIP", blip / "blip-image-captioning-base")
    assert find_model_folder(blip, BLIP_SPEC) == blip / "blip-image-captioning-base"


def test_a_clip_model_in_the_blip_folder_is_refused(models):
    with pytest.raises(InterrogatorUnavailable, match="is a 'clip' model, not 'blip'"):
        find_model_folder(models / "CLIP", BLIP_SPEC)


def test_project_folders_are_named_relative_to_the_project():
    with pytest.raises(InterrogatorUnavailable) as error:
        find_model_folder(PROJECT_ROOT / "models" / "BLIP-missing", BLIP_SPEC)
    message = str(error.value)
    assert message.startswith("Interrogate CLIP needs a BLIP captioning model in models/BLIP-missing/ ")


# 4. Category lists and options ----------------------------------------------------------------------------
def test_load_categories(tmp_path):
    (tmp_path / "artists.txt").write_text("Ann\n\n  Bo  \nAnn\nby Cy\n", encoding="utf-8")
    (tmp_path / "flavors.top3.txt").write_text("x\ny\nz\nw\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    artists, flavors = load_categories(tmp_path, dict_limit=3)
    assert (artists.name, artists.top_n, artists.items) == ("artists", 1, ("by Ann", "by Bo", "by Cy"))
    assert (flavors.name, flavors.top_n, flavors.items) == ("flavors", 3, ("x", "y", "z"))
    assert [c.name for c in load_categories(tmp_path, skip=("artists",))] == ["flavors"]
    with pytest.raises(InterrogatorUnavailable, match="category lists"):
        load_categories(tmp_path / "nowhere")


def test_shipped_category_lists():
    categories = {c.name: c for c in load_categories(DEFAULT_CATEGORIES_DIR)}
    assert sorted(categories) == ["artists", "flavors", "mediums", "movements"]
    sizes = {name: len(c.items) for name, c in categories.items()}
    assert 90 <= sizes["artists"] <= 150 and 180 <= sizes["flavors"] <= 250
    assert 35 <= sizes["mediums"] <= 60 and 50 <= sizes["movements"] <= 80
    assert all(c.top_n == 1 for c in categories.values())
    assert all(item.startswith("by ") for item in categories["artists"].items)
    for path in DEFAULT_CATEGORIES_DIR.glob("*.txt"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(set(lines)) and all(line.strip() == line and line for line in lines), path


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=0), "num_beams must be between 1 and 16, got 0"),
    (dict(min_length=30, max_length=20), "min_length must be between 0 and max_length \\(20\\), got 30"),
    (dict(max_length=0), "max_length must be between 1 and 512, got 0"),
])
def test_caption_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptionOptions(**kwargs)


def test_every_missing_model_is_named_at_once_relative_to_the_data_dir(tmp_path):
    """Issue 10: BLIP and CLIP both missing is one message naming both, as models/BLIP and models/CLIP (the
    folders under --data-dir), never as absolute paths."""
    from pipelines.device_policy import DevicePolicy
    from pipelines.launch_flags import parse_flags
    from pipelines.models.model_manager import ModelManager

    settings = parse_flags(["--data-dir", str(tmp_path)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    ok, reason = models.interrogator.available()
    assert not ok
    assert "a BLIP captioning model in models/BLIP/" in reason and "a CLIP model in models/CLIP/" in reason
    assert str(tmp_path) not in reason
