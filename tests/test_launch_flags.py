import logging
from pathlib import Path

import pytest
import torch

from pipelines.device_policy import DevicePolicy, MemoryMode
from pipelines.launch_flags import parse_flags


def test_defaults_bind_loopback_on_7860():
    s = parse_flags([])
    assert (s.server_name, s.server_port) == ("127.0.0.1", 7860)
    assert s.gradio_img2img_tool == "editor"


def test_listen_port_and_paths(tmp_path):
    s = parse_flags(["--listen", "--port", "9000", "--data-dir", str(tmp_path), "--ckpt-dir", "/x/ckpts",
                     "--gradio-img2img-tool", "color-sketch"])
    assert (s.server_name, s.server_port) == ("0.0.0.0", 9000)
    assert s.checkpoint_dirs == [tmp_path.resolve() / "models" / "Stable-diffusion", Path("/x/ckpts")]
    assert s.outputs_dir == tmp_path.resolve() / "outputs"
    assert s.gradio_img2img_tool == "color-sketch"


def test_nowebui_defaults_to_7861():
    assert parse_flags(["--nowebui"]).server_port == 7861


def test_unknown_flag_exits_listing_valid_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_flags(["--medvarm"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--medvarm" in err and "Valid flags:" in err and "--medvram" in err and "--lowvram" in err


def test_bad_choice_is_an_error(capsys):
    with pytest.raises(SystemExit):
        parse_flags(["--gradio-img2img-tool", "crayon"])
    assert "color-sketch" in capsys.readouterr().err


def test_gpu_defaults_to_fp16_and_flags_override():
    gpu = DevicePolicy.from_settings(parse_flags([]), cuda_available=True, mps_available=False)
    assert gpu.device == torch.device("cuda", 0) and gpu.dtype == torch.float16 and gpu.vae_dtype == torch.float16
    assert DevicePolicy.from_settings(parse_flags(["--no-half"]), True, False).dtype == torch.float32
    assert DevicePolicy.from_settings(parse_flags(["--precision", "full"]), True, False).dtype == torch.float32
    p = DevicePolicy.from_settings(parse_flags(["--no-half-vae"]), True, False)
    assert (p.dtype, p.vae_dtype) == (torch.float16, torch.float32)
    assert DevicePolicy.from_settings(parse_flags(["--device-id", "1"]), True, False).device == torch.device("cuda", 1)


def test_use_cpu_and_cpu_machines_run_fp32():
    p = DevicePolicy.from_settings(parse_flags(["--use-cpu", "all"]), cuda_available=True, mps_available=False)
    assert p.device.type == "cpu" and p.dtype == torch.float32
    assert DevicePolicy.from_settings(parse_flags([]), False, False).device.type == "cpu"
    assert DevicePolicy.from_settings(parse_flags([]), False, True).device.type == "mps"


def test_offload_modes_on_gpu_and_logged_no_op_on_cpu(caplog):
    assert DevicePolicy.from_settings(parse_flags(["--medvram"]), True, False).memory_mode is MemoryMode.MEDVRAM
    assert DevicePolicy.from_settings(parse_flags(["--lowvram"]), True, False).memory_mode is MemoryMode.LOWVRAM
    with caplog.at_level(logging.WARNING):
        p = DevicePolicy.from_settings(parse_flags(["--lowvram"]), False, False)
    assert p.memory_mode is MemoryMode.NORMAL
    assert "--lowvram has no effect on cpu" in caplog.text
