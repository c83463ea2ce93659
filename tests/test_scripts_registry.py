"""The script registry: A1111 API names, argument parsing through run_script, params built by a UI."""

import numpy as np
import pytest
from PIL import Image

from pipelines.fields import RequestError
from pipelines.generation.engine import GenerationResult
from pipelines.generation.requests import Img2ImgRequest
from scripts import loopback, sd_upscale
from scripts.loopback import LoopbackParams
from scripts.registry import (
    SCRIPTS,
    find_script,
    parse_script_args,
    run_script,
    run_with_params,
    script_titles,
)
from scripts.sd_upscale import SdUpscaleParams


class EchoEngine:
    """Returns the init image (resized) for every batch item; records the requests."""

    def __init__(self, outputs_root):
        self.outputs_root = outputs_root
        self.calls = []

    def img2img(self, request, on_progress=None, control=None):
        request.validate()
        self.calls.append(request)
        sources = request.batch_images or (request.init_image,)
        images = [s.convert("RGB").resize((request.width, request.height)) for s in sources]
        return GenerationResult(images=images, seeds=[request.seed + j for j in range(len(images))],
                                subseeds=[0] * len(images), infotexts=["x"] * len(images))


def request(**kw):
    base = dict(init_image=Image.new("RGB", (64, 64), (10, 120, 200)), width=64, height=64, steps=2, seed=7,
                save_images=False)
    base.update(kw)
    return Img2ImgRequest(**base)


def test_names_as_the_a1111_api_sends_them():
    assert script_titles() == ["Loopback", "Outpainting mk2", "Poor man's outpainting", "SD upscale"]
    assert set(SCRIPTS) == {"loopback", "outpainting mk2", "poor man's outpainting", "sd upscale"}
    assert find_script("loopback") is loopback and find_script("SD Upscale") is sd_upscale
    assert find_script("  LOOPBACK ") is loopback


@pytest.mark.parametrize("name", ["x/y/z plot", "", None, "sd_upscale"])
def test_unknown_script_names_the_known_ones(name):
    with pytest.raises(RequestError) as exc:
        find_script(name)
    assert exc.value.field == "script_name"
    assert "known: Loopback, Outpainting mk2, Poor man's outpainting, SD upscale" in str(exc.value)


def test_parse_script_args_dispatches(tmp_path):
    assert parse_script_args("loopback", [2, 0.1]) == LoopbackParams(loops=2, final_denoising_strength=0.1)
    assert parse_script_args("sd upscale", ["", 32, "Lanczos", 3], models_dir=tmp_path) == \
        SdUpscaleParams(32, "Lanczos", 3.0)


def test_run_script_loopback(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run_script("Loopback", engine, request(), [3, 0.2, "Lazy", "None"], models_dir=tmp_path)
    assert [c.seed for c in engine.calls] == [7, 8, 9] and len(result.images) == 4


def test_run_script_sd_upscale(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run_script("sd upscale", engine, request(), ["", 16, 1, 2.0], models_dir=tmp_path)
    assert result.images[0].size == (128, 128) and len(engine.calls) == 9


def test_run_script_passes_the_interrogator(tmp_path):
    engine = EchoEngine(tmp_path)
    run_script("loopback", engine, request(prompt="p"), [1, 0.5, "Linear", "CLIP"], models_dir=None,
               interrogate=lambda image: "a blue square")
    assert engine.calls[0].prompt == "p, a blue square"


@pytest.mark.parametrize("name,args,needle", [
    ("loopback", [99], "loops 99 is outside 1..32"),
    ("sd upscale", ["", 16, "ESRGAN_4x"], "unknown upscaler 'ESRGAN_4x'; known: None, Lanczos, Nearest"),
    ("sd upscale", {"overlap": 16}, "expected a list"),
])
def test_bad_args_through_run_script_fail_before_any_work(tmp_path, name, args, needle):
    engine = EchoEngine(tmp_path)
    with pytest.raises(RequestError) as exc:
        run_script(name, engine, request(), args, models_dir=tmp_path)
    assert exc.value.field == "script_args" and needle in str(exc.value) and engine.calls == []


def test_run_with_params_built_by_a_ui(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run_with_params(engine, request(), SdUpscaleParams(8, "Nearest", 1.5), models_dir=tmp_path)
    assert result.images[0].size == (96, 96)
    result = run_with_params(engine, request(), LoopbackParams(loops=2, color_correction=False))
    assert np.asarray(result.images[0])[0, 0].tolist() == [10, 120, 200]
    with pytest.raises(TypeError):
        run_with_params(engine, request(), object())


def test_sd_upscale_with_a_builtin_upscaler_needs_no_models_folder(tmp_path):
    engine = EchoEngine(tmp_path)
    result = run_script("sd upscale", engine, request(), ["", 16, "Lanczos", 2], models_dir=None)
    assert result.images[0].size == (128, 128)
    with pytest.raises(RequestError) as exc:
        run_script("sd upscale", engine, request(), ["", 16, "4x-UltraSharp", 2], models_dir=None)
    assert "known: None, Lanczos, Nearest" in str(exc.value)
