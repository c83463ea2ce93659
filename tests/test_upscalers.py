"""Upscalers: discovery in models/, built-in resamplers, tiny spandrel models saved to disk, safe loading."""

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.fields import RequestError
from pipelines.models import upscalers
from pipelines.models.upscalers import (
    UpscalerModels,
    list_upscalers,
    load_state_dict,
    resolve_upscaler,
    run_model,
    scale_from_name,
    upscale,
)


def noise_image(w=40, h=30, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8), "RGB")


def arch(name):
    """spandrel's own architecture classes (imported through the project's torchvision-free import)."""
    upscalers._import_spandrel()
    if name == "ESRGAN":
        from spandrel.architectures.ESRGAN import ESRGAN
        return ESRGAN
    from spandrel.architectures.Compact import Compact
    return Compact


def tiny_esrgan(scale=4):
    torch.manual_seed(0)
    return arch("ESRGAN")(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)


def tiny_compact(scale=2):
    torch.manual_seed(0)
    return arch("Compact")(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale)


@pytest.fixture
def models_dir(tmp_path):
    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "RealESRGAN").mkdir()
    save_file(tiny_esrgan(4).state_dict(), tmp_path / "ESRGAN" / "4x-Tiny.safetensors")
    torch.save(tiny_compact(2).state_dict(), tmp_path / "RealESRGAN" / "RealESRGAN_x2plus.pth")
    (tmp_path / "ESRGAN" / "README.txt").write_text("not a model")
    return tmp_path


def test_listing_builtins_first_then_model_files(models_dir):
    listed = list_upscalers(models_dir)
    assert [u.name for u in listed] == ["None", "Lanczos", "Nearest", "4x-Tiny", "R-ESRGAN 2x+"]
    assert [u.path is None for u in listed] == [True, True, True, False, False]
    assert listed[3].path == models_dir / "ESRGAN" / "4x-Tiny.safetensors"
    assert (listed[3].scale, listed[4].scale) == (4, 2)


def test_listing_an_empty_or_missing_folder_gives_the_builtins(tmp_path):
    assert [u.name for u in list_upscalers(tmp_path / "nowhere")] == ["None", "Lanczos", "Nearest"]


def test_same_name_in_two_folders_is_disambiguated(tmp_path):
    for folder in ("ESRGAN", "SwinIR", "DAT"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Same_4x.pth").write_bytes(b"")
    (tmp_path / "DAT" / "DAT_x3.safetensors").write_bytes(b"")
    names = [u.name for u in list_upscalers(tmp_path)][3:]
    assert names == ["Same_4x", "Same_4x (SwinIR)", "DAT x3", "Same_4x (DAT)"]


@pytest.mark.parametrize("stem,scale", [
    ("4x-UltraSharp", 4), ("RealESRGAN_x4plus", 4), ("DAT_x2", 2), ("SwinIR_4x", 4), ("x3_model", 3),
    ("003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN", 4), ("realesr-general-x4v3", 4), ("1x-Denoise", 1),
    ("mystery", 4),
])
def test_scale_from_file_name(stem, scale):
    assert scale_from_name(stem) == scale


def test_resolve_by_name_any_case_or_by_index(models_dir):
    assert resolve_upscaler("r-esrgan 2X+", models_dir).name == "R-ESRGAN 2x+"
    assert resolve_upscaler(1, models_dir).name == "Lanczos"
    assert resolve_upscaler(3, models_dir).name == "4x-Tiny"


@pytest.mark.parametrize("choice,needle", [
    ("ESRGAN_4x", "unknown upscaler 'ESRGAN_4x'; known: None, Lanczos, Nearest, 4x-Tiny, R-ESRGAN 2x+"),
    (9, "index 9 is outside 0..4"),
    (2.5, "neither an upscaler name nor an index"),
])
def test_unknown_upscaler_names_the_known_ones(models_dir, choice, needle):
    with pytest.raises(RequestError) as exc:
        upscale(noise_image(), choice, 2, models_dir)
    assert exc.value.field == "upscaler" and needle in str(exc.value)


def test_builtin_resamplers(tmp_path):
    img = noise_image(40, 30)
    assert upscale(img, "Lanczos", 2, tmp_path).size == (80, 56)
    # A1111 floors the target to a multiple of 8: 60x45 -> 56x40; 53.2x39.9 -> 48x32.
    assert upscale(img, "Lanczos", 1.5, tmp_path).size == (56, 40)
    assert upscale(img, "Lanczos", 1.33, tmp_path).size == (48, 32)
    nearest = np.asarray(upscale(img.crop((0, 0, 40, 28)), "nearest", 2, tmp_path))
    assert np.array_equal(nearest[::2, ::2], np.asarray(img.crop((0, 0, 40, 28))))
    assert np.array_equal(nearest[1::2, 1::2], np.asarray(img.crop((0, 0, 40, 28))))
    # "None" does no resampling at all: the caller (SD upscale) brings it to size.
    none = upscale(img, "None", 3, tmp_path)
    assert none.size == img.size and np.array_equal(np.asarray(none), np.asarray(img)) and none is not img


@pytest.mark.parametrize("scale", [0, -1, 17, "2", True])
def test_bad_scale(tmp_path, scale):
    with pytest.raises(RequestError) as exc:
        upscale(noise_image(), "Lanczos", scale, tmp_path)
    assert exc.value.field == "scale"


def test_model_upscaler_loads_from_safetensors_and_upscales(models_dir):
    models = UpscalerModels()
    img = noise_image(40, 30)
    out4 = upscale(img, "4x-Tiny", 4, models_dir, models=models)
    assert out4.size == (160, 120) and out4.mode == "RGB"
    # The model works at 4x; asking for 2x resizes its output down to 2x, floored to a multiple of 8.
    assert upscale(img, "4x-Tiny", 2, models_dir, models=models).size == (80, 56)
    # Same weights, same input -> same pixels; loaded once (cached).
    again = upscale(img, "4x-tiny", 4, models_dir, models=models)
    assert np.array_equal(np.asarray(out4), np.asarray(again))
    assert models.loads == 1
    # The output is the model's: compare with running the architecture directly.
    with torch.inference_mode():
        direct = tiny_esrgan(4)(torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None])
    expected = (direct[0].clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.abs(np.asarray(out4, dtype=int) - expected).max() <= 1


def transformer_model(kind):
    upscalers._import_spandrel()
    torch.manual_seed(0)
    if kind == "SwinIR":
        from spandrel.architectures.SwinIR import SwinIR
        return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                      upsampler="pixelshuffle")
    if kind == "HAT":
        from spandrel.architectures.HAT import HAT
        return HAT(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                   compress_ratio=3, squeeze_factor=3)
    from spandrel.architectures.DAT import DAT
    return DAT(img_size=16, embed_dim=32, split_size=[2, 4], depth=[1], num_heads=[2], upscale=3)


@pytest.mark.parametrize("kind,file,scale", [
    ("SwinIR", "SwinIR_x2.safetensors", 2), ("HAT", "HAT-tiny_x2.pth", 2), ("DAT", "DAT_x3.safetensors", 3)])
def test_transformer_architectures_load_from_their_folders(tmp_path, kind, file, scale):
    (tmp_path / kind).mkdir()
    state = transformer_model(kind).state_dict()
    if file.endswith(".pth"):
        torch.save(state, tmp_path / kind / file)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / kind / file)
    info = list_upscalers(tmp_path)[3]
    assert info.scale == scale and info.path.name == file
    out = upscale(noise_image(24, 16), info.name, scale, tmp_path, models=UpscalerModels())
    assert out.size == (24 * scale, 16 * scale)


def test_model_passes_repeat_until_the_target_is_covered(models_dir):
    models = UpscalerModels()
    # A 2x model asked for 3x: two passes (4x) then Lanczos down to exactly 3x.
    assert upscale(noise_image(20, 16), "R-ESRGAN 2x+", 3, models_dir, models=models).size == (56, 48)
    assert models.loads == 1


def test_a_model_at_scale_1_runs_one_pass_as_a1111(models_dir, monkeypatch):
    """A 4x model at scale 1 covers the target after one pass; three (64x the pixels) would be waste."""
    passes = []
    real = upscalers.run_model
    monkeypatch.setattr(upscalers, "run_model", lambda *a, **k: passes.append(1) or real(*a, **k))
    out = upscale(noise_image(40, 32), "4x-Tiny", 1, models_dir, models=UpscalerModels())
    assert len(passes) == 1 and out.size == (40, 32)


def test_cache_reloads_a_replaced_file_and_keeps_max_loaded(models_dir):
    models = UpscalerModels(max_loaded=1)
    path = models_dir / "ESRGAN" / "4x-Tiny.safetensors"
    first = models.get(path)
    assert models.get(path) is first
    models.get(models_dir / "RealESRGAN" / "RealESRGAN_x2plus.pth")
    assert models.get(path) is not first and models.loads == 3  # evicted by the other model, read again
    save_file(tiny_esrgan(4).state_dict(), path)
    os.utime(path, ns=(1, 1))  # a different mtime: the file changed
    models.get(path)
    assert models.loads == 4


def test_tiled_inference_matches_whole_image_inference(models_dir):
    model = UpscalerModels().get(models_dir / "ESRGAN" / "4x-Tiny.safetensors")
    img = noise_image(70, 50, seed=3)
    whole = np.asarray(run_model(model, img, tile=0), dtype=int)
    tiled = np.asarray(run_model(model, img, tile=32, overlap=8), dtype=int)
    assert whole.shape == tiled.shape == (200, 280, 3)
    assert np.abs(whole - tiled).mean() < 0.5  # only a few border pixels of the small receptive field differ


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    (tmp_path / "ESRGAN").mkdir()
    marker = tmp_path / "pwned"
    evil = _RunsCode()
    evil.marker = marker
    torch.save({"conv_first.weight": evil}, tmp_path / "ESRGAN" / "evil.pth")
    with pytest.raises(RequestError) as exc:
        upscale(noise_image(), "evil", 2, tmp_path, models=UpscalerModels())
    assert exc.value.field == "upscaler"
    assert "evil.pth: refused to load" in str(exc.value) and "never executed" in str(exc.value)
    assert not marker.exists()


def test_a_state_dict_of_no_known_architecture_is_refused(tmp_path):
    (tmp_path / "ESRGAN").mkdir()
    save_file({"mystery.weight": torch.zeros(3, 3)}, tmp_path / "ESRGAN" / "mystery.safetensors")
    with pytest.raises(RequestError) as exc:
        upscale(noise_image(), "mystery", 2, tmp_path, models=UpscalerModels())
    assert "not a model architecture spandrel knows" in str(exc.value)


def test_a_corrupt_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(RequestError) as exc:
        load_state_dict(path)
    assert "broken.safetensors: not a readable .safetensors file" in str(exc.value)


def test_spandrel_imports_without_torchvision_and_leaves_no_stand_in_behind():
    spandrel = upscalers._import_spandrel()
    assert hasattr(spandrel, "ModelLoader")
    names = {str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures()}
    assert {"ESRGAN", "Compact", "SwinIR", "DAT", "HAT", "SCUNet"} <= names
    stand_in = sys.modules.get("torchvision")
    assert stand_in is None or getattr(stand_in, "__file__", None) is not None  # a real one, if any


def test_no_models_folder_lists_the_builtins():
    assert [u.name for u in list_upscalers(None)] == ["None", "Lanczos", "Nearest"]
    assert upscale(noise_image(12, 12), "Lanczos", 2, None).size == (24, 24)
