"""Offline checkpoint loading: round trips through the original LDM single-file layout, safety, detection."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from pipelines.models.checkpoint_loader import CheckpointError, load_checkpoint, load_vae, read_state_dict
from pipelines.models.components import SDComponents
from pipelines.models.demo_model import build_demo_components
from tests.ldm_export import (
    ldm_state_dict,
    save_state_dict,
    write_checkpoint,
    write_sidecar,
    write_vae,
    write_vae_sidecar,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PARTS = ("unet", "vae", "text_encoder")
CROSS_ATTENTION_K = "transformer_blocks.0.attn2.to_k.weight"  # its width is the text encoder's


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def demo() -> SDComponents:
    return build_demo_components()


def assert_same_weights(expected: SDComponents, actual: SDComponents, *, as_half: bool = False) -> None:
    for part in PARTS:
        want, got = getattr(expected, part).state_dict(), getattr(actual, part).state_dict()
        assert set(want) == set(got), part
        for key, tensor in want.items():
            if as_half and tensor.is_floating_point():
                tensor = tensor.half()
            assert torch.equal(tensor.to(got[key].dtype), got[key]), f"{part}: {key}"


# -- the exporter itself is right: diffusers' forward conversion gives back the originals --------------


def test_exporter_is_the_inverse_of_diffusers_conversion(demo):
    exported = ldm_state_dict(demo)
    converted = {
        "unet": convert_ldm_unet_checkpoint(exported, dict(demo.unet.config)),
        "vae": convert_ldm_vae_checkpoint(exported, dict(demo.vae.config)),
        "text_encoder": {
            k.removeprefix("text_model."): v
            for k, v in convert_ldm_clip_checkpoint(exported).items()
            if not k.endswith("position_ids")
        },
    }
    for part in PARTS:
        original = getattr(demo, part).state_dict()
        original = {k.removeprefix("text_model."): v for k, v in original.items()}
        assert set(converted[part]) == set(original), part
        assert all(torch.equal(converted[part][k], original[k]) for k in original), part
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in exported)
    assert any(k.startswith("first_stage_model.encoder.down.0.block.0.") for k in exported)


# -- round trips -------------------------------------------------------------------------------------


def test_safetensors_round_trip_is_exact(demo, tmp_path):
    loaded = load_checkpoint(write_checkpoint(demo, tmp_path / "tiny.safetensors"))
    assert_same_weights(demo, loaded)
    assert loaded.unet.dtype == torch.float32
    assert not loaded.is_inpainting
    assert loaded.tokenizer.model_max_length == 77
    assert loaded.scheduler.config.steps_offset == 1


def test_fp16_file_loads_fp16_rounded_values(demo, tmp_path):
    path = write_checkpoint(demo, tmp_path / "tiny-fp16.safetensors", half=True)
    assert_same_weights(demo, load_checkpoint(path), as_half=True)
    as_half = load_checkpoint(path, dtype=torch.float16)
    assert as_half.unet.dtype == torch.float16 and as_half.text_encoder.dtype == torch.float16
    assert_same_weights(demo, as_half, as_half=True)


def test_vae_dtype_can_differ_for_no_half_vae(demo, tmp_path):
    path = write_checkpoint(demo, tmp_path / "tiny.safetensors")
    loaded = load_checkpoint(path, dtype=torch.float16, vae_dtype=torch.float32)
    assert loaded.unet.dtype == torch.float16 and loaded.vae.dtype == torch.float32


def test_full_ckpt_with_ema_uses_non_ema_weights_like_a1111(demo, tmp_path):
    path = write_checkpoint(demo, tmp_path / "full.ckpt", ema=True, broken_position_ids=True)
    assert "model_ema.decay" in read_state_dict(path)
    assert_same_weights(demo, load_checkpoint(path))
    with_ema = load_checkpoint(path, use_ema=True)
    key = "conv_in.weight"
    assert torch.equal(with_ema.unet.state_dict()[key], demo.unet.state_dict()[key] + 1)


def test_broken_position_ids_are_rebuilt(demo, tmp_path):
    loaded = load_checkpoint(write_checkpoint(demo, tmp_path / "m.safetensors", broken_position_ids=True))
    (ids,) = [buf for name, buf in loaded.text_encoder.named_buffers() if name.endswith("position_ids")]
    assert ids.dtype == torch.int64 and torch.equal(ids[0], torch.arange(77))


def _sd_ordered_unet(in_channels: int) -> UNet2DConditionModel:
    # SD's own block order (attention at the top level) and 2 layers: covers the other LDM index paths.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return _build_sd_ordered_unet(in_channels)


def _build_sd_ordered_unet(in_channels: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )


def test_nine_channel_inpainting_unet_round_trips(demo, tmp_path):
    inpaint = SDComponents(_sd_ordered_unet(9), demo.vae, demo.text_encoder, demo.tokenizer, demo.scheduler)
    path = write_checkpoint(inpaint, tmp_path / "tiny-inpainting.safetensors")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    sidecar["unet"]["in_channels"] = 4  # a wrong config value: in_channels must come from the weights
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    loaded = load_checkpoint(path)
    assert loaded.is_inpainting and loaded.unet.config.in_channels == 9
    assert_same_weights(inpaint, loaded)


def test_other_unet_input_widths_are_refused(demo, tmp_path):
    pix2pix = SDComponents(_sd_ordered_unet(8), demo.vae, demo.text_encoder, demo.tokenizer, demo.scheduler)
    with pytest.raises(CheckpointError, match="8 input channels"):
        load_checkpoint(write_checkpoint(pix2pix, tmp_path / "ip2p.safetensors"))


def test_loaded_models_compute_the_same_pixels(demo, tmp_path):
    loaded = load_checkpoint(write_checkpoint(demo, tmp_path / "tiny.ckpt"))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    tokens = demo.tokenizer(["a red fox"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        for model in (demo, loaded):
            model.text_encoder.eval()
        text_a = demo.text_encoder(tokens)[0]
        text_b = loaded.text_encoder(tokens)[0]
        assert torch.equal(text_a, text_b)
        unet_a = demo.unet(latents, 500, encoder_hidden_states=text_a).sample
        unet_b = loaded.unet(latents, 500, encoder_hidden_states=text_b).sample
        assert torch.equal(unet_a, unet_b)
        pixels_a = demo.vae.decode(latents).sample
        pixels_b = loaded.vae.decode(latents).sample
    assert pixels_a.shape == (1, 3, 64, 64)
    assert torch.equal(pixels_a, pixels_b)


# -- safety ------------------------------------------------------------------------------------------


class _OpensAFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_OpensAFile, _RunsAShellCommand])
@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_malicious_ckpt_is_refused_and_never_runs(tmp_path, payload, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    obj = {"state_dict": {"model.diffusion_model.x": payload(marker)}}
    if container == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    for load in (read_state_dict, load_checkpoint):
        with pytest.raises(CheckpointError) as caught:
            load(path)
        message = str(caught.value)
        assert str(path) in message and "refused" in message and "arbitrary code execution" in message
        assert re.search(r"calls [\w.]*(open|system)\b", message), message  # names the culprit
    assert not marker.exists()


def test_lightning_ckpt_with_harmless_extras_loads(demo, tmp_path):
    """Official SD .ckpt files carry Lightning callback state and numpy scalars next to the weights."""
    module_names = ["pytorch_lightning", "pytorch_lightning.callbacks"]
    module_names.append("pytorch_lightning.callbacks.model_checkpoint")
    fake_modules = {name: type(sys)(name) for name in module_names}

    class ModelCheckpoint:
        def __init__(self):
            self.monitor, self.best_model_score = "val/loss", torch.tensor(0.1)

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module_names[-1], "ModelCheckpoint"
    fake_modules[module_names[-1]].ModelCheckpoint = ModelCheckpoint
    path = tmp_path / "lightning.ckpt"
    with pytest.MonkeyPatch.context() as patch:
        for name, module in fake_modules.items():
            patch.setitem(sys.modules, name, module)
        torch.save({"state_dict": ldm_state_dict(demo), "callbacks": {"cb": ModelCheckpoint()},
                    "global_step": np.int64(470000)}, path)
    write_sidecar(demo, path)
    assert_same_weights(demo, load_checkpoint(path))


# -- detection and damaged files -------------------------------------------------------------------------


def _save(tmp_path: Path, name: str, state: dict) -> Path:
    return save_state_dict(state, tmp_path / name)


def test_an_incomplete_sdxl_file_is_named_as_such(tmp_path):
    """SDXL loads (tests/test_sdxl.py); a file with its keys but parts missing is refused naming the part."""
    path = _save(tmp_path, "sdxl.safetensors", {
        f"model.diffusion_model.input_blocks.4.1.{CROSS_ATTENTION_K}": torch.zeros(64, 2048),
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(768),
    })
    with pytest.raises(CheckpointError, match="incomplete SDXL checkpoint: no VAE weights") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("openclip_keys,message", [
    (True, "an SD 2.x file without UNet weights"),  # SD 2.x loads (tests/test_sd2.py); damaged parts are named
    (False, r"an SD 2.x UNet \(cross-attention width 1024\) without its OpenCLIP text encoder"),
])
def test_a_damaged_sd2_file_is_named_as_such(tmp_path, openclip_keys, message):
    state = {
        f"model.diffusion_model.input_blocks.1.1.{CROSS_ATTENTION_K}": torch.zeros(32, 1024),
        "first_stage_model.encoder.conv_in.weight": torch.zeros(128, 3, 3, 3),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(1024),
    }
    if openclip_keys:
        state["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(3072, 1024)
    path = _save(tmp_path, "sd2.safetensors", state)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


def test_random_keys_are_not_a_stable_diffusion_checkpoint(tmp_path):
    state = {"lora_unet_down_blocks_0.alpha": torch.ones(1), "foo.bar": torch.zeros(3)}
    path = _save(tmp_path, "lora.safetensors", state)
    with pytest.raises(CheckpointError, match="not a Stable Diffusion checkpoint"):
        load_checkpoint(path)


def test_a_vae_file_in_the_checkpoint_folder_gets_a_hint(demo, tmp_path):
    path = write_vae(demo.vae, tmp_path / "vae.safetensors", sidecar=False)
    with pytest.raises(CheckpointError, match="not a Stable Diffusion checkpoint.*models/VAE"):
        load_checkpoint(path)


def test_missing_weights_are_listed(demo, tmp_path):
    state = ldm_state_dict(demo)
    del state["model.diffusion_model.out.2.weight"]
    path = _save(tmp_path, "damaged.safetensors", state)
    write_sidecar(demo, path)
    with pytest.raises(CheckpointError, match=r"missing \[conv_out.weight\]"):
        load_checkpoint(path)


def test_non_sd15_sizes_without_sidecar_say_what_to_do(demo, tmp_path):
    path = write_checkpoint(demo, tmp_path / "tiny.safetensors", sidecar=False)
    # A1111's user metadata file has the same name; it must not be mistaken for a config.
    path.with_suffix(".json").write_text(json.dumps({"description": "my model", "sd version": "SD1"}))
    with pytest.raises(CheckpointError, match="cross-attention width 32, expected 768.*tiny.json"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["truncated.safetensors", "truncated.ckpt"])
def test_truncated_file_names_the_file(demo, tmp_path, name):
    path = write_checkpoint(demo, tmp_path / name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["garbage.safetensors", "garbage.ckpt", "empty.ckpt"])
def test_garbage_file_names_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else os.urandom(4096))
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_plain_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not a diffusers model"):
        load_checkpoint(tmp_path)


# -- standalone VAEs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "prefix"), [("vae.safetensors", ""), ("vae.pt", "first_stage_model.")])
def test_load_vae_from_ldm_layout(demo, tmp_path, name, prefix):
    vae = load_vae(write_vae(demo.vae, tmp_path / name, prefix=prefix))
    want = demo.vae.state_dict()
    assert set(vae.state_dict()) == set(want)
    assert all(torch.equal(vae.state_dict()[k], want[k]) for k in want)


def test_load_vae_from_diffusers_layout_and_from_whole_checkpoint(demo, tmp_path):
    state = {k: v.clone() for k, v in demo.vae.state_dict().items()}
    path = save_state_dict(state, tmp_path / "d.safetensors")
    write_vae_sidecar(demo.vae, path)
    whole = write_checkpoint(demo, tmp_path / "whole.safetensors")
    for vae in (load_vae(path), load_vae(whole)):
        assert all(torch.equal(vae.state_dict()[k], v) for k, v in demo.vae.state_dict().items())


def test_load_vae_rejects_non_vae(tmp_path):
    path = _save(tmp_path, "x.safetensors", {"foo": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not a VAE"):
        load_vae(path)


# -- diffusers folders and offline behaviour -----------------------------------------------------------


def _save_diffusers_folder(components: SDComponents, folder: Path) -> Path:
    components.unet.save_pretrained(folder / "unet")
    components.vae.save_pretrained(folder / "vae")
    components.text_encoder.save_pretrained(folder / "text_encoder")
    components.scheduler.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder  # no tokenizer/: the shipped one must be used


def test_diffusers_folder_loads_with_shipped_tokenizer(demo, tmp_path):
    loaded = load_checkpoint(_save_diffusers_folder(demo, tmp_path / "tiny-diffusers"))
    assert_same_weights(demo, loaded)
    assert loaded.tokenizer("a cat").input_ids == demo.tokenizer("a cat").input_ids


def test_an_incomplete_sdxl_diffusers_folder_is_named_as_such(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(CheckpointError, match="StableDiffusionXLPipeline folder is incomplete: no unet"):
        load_checkpoint(tmp_path)


def test_loads_with_no_network_and_an_empty_hf_home(demo, tmp_path):
    """A fresh interpreter (hub settings are read at import), sockets disabled, HF_HOME empty."""
    single = write_checkpoint(demo, tmp_path / "tiny.safetensors")
    folder = _save_diffusers_folder(demo, tmp_path / "tiny-diffusers")
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    script = textwrap.dedent(f"""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from pipelines.models.checkpoint_loader import load_checkpoint
        for path in [{str(single)!r}, {str(folder)!r}]:
            components = load_checkpoint(path)
            assert components.unet.config.cross_attention_dim == 32
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    assert list(hf_home.iterdir()) == []  # nothing was downloaded or cached
