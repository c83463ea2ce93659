"""One owner of every set of weights: the ModelManager holds the checkpoint, its VAEs, the interrogation
models and the upscaler models; the device policy places each; a checkpoint switch frees them all; a failed
switch keeps the previous model; a VAE file gone from disk is a clear error.

Placement is watched without a GPU: WatchedPolicy says its device is "cuda" but only records each move
(through DevicePolicy._move, the one seam every placement goes through) and tags the module with where
it would be, so the weights stay on the CPU and still run.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from ldm_export import write_checkpoint, write_vae
from PIL import Image
from safetensors.torch import save_file
from test_interrogate import CATEGORY_FILES, FAST, _tiny_blip, _tiny_clip
from test_upscalers import tiny_esrgan

from pipelines.device_policy import DevicePolicy, MemoryMode
from pipelines.launch_flags import parse_flags
from pipelines.models import upscalers as upscalers_module
from pipelines.models.checkpoint_loader import CheckpointError
from pipelines.models.demo_model import build_demo_components
from pipelines.models.model_manager import ModelManager, ModelNotFound, NoModelLoaded
from pipelines.models.upscalers import UpscalerModels, upscale

UPSCALER = "4x-Tiny"


@dataclass(frozen=True)
class WatchedPolicy(DevicePolicy):
    moves: list = field(default_factory=list, compare=False, hash=False)

    def _move(self, module, device):
        self.moves.append((module, device.type))
        module.placed_on = device.type  # instead of moving: the weights stay on the CPU and still run
        return module

    def empty_cache(self) -> None:
        self.moves.append((None, "empty_cache"))


def watched(mode: MemoryMode = MemoryMode.NORMAL) -> WatchedPolicy:
    return WatchedPolicy(torch.device("cuda"), torch.float32, torch.float32, mode)


def where(module) -> str:
    """Where the policy last put the module ("cpu" when it never moved it: models load onto the CPU)."""
    return getattr(module, "placed_on", "cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_owner_models(tmp_path_factory.mktemp("owner"))


def write_owner_models(root: Path) -> Path:
    """Two tiny checkpoints (a, b), a VAE file, tiny BLIP/CLIP, a short category list, a tiny upscaler."""
    models = root / "models"
    components = build_demo_components()
    for name in ("a", "b"):
        write_checkpoint(components, models / "Stable-diffusion" / f"{name}.safetensors")
    write_vae(components.vae, models / "VAE" / "v.safetensors")
    _tiny_blip(models / "BLIP")
    _tiny_clip(models / "CLIP")
    (models / "interrogate").mkdir()
    for name, text in CATEGORY_FILES.items():
        (models / "interrogate" / name).write_text(text, encoding="utf-8")
    (models / "ESRGAN").mkdir()
    save_file(tiny_esrgan(4).state_dict(), models / "ESRGAN" / f"{UPSCALER}.safetensors")
    return root


def manager(data_dir: Path, policy: DevicePolicy | None = None, *flags: str) -> ModelManager:
    settings = parse_flags(["--data-dir", str(data_dir), *flags])
    models = ModelManager(settings, policy or DevicePolicy.from_settings(settings))
    models.interrogator.categories_dir = data_dir / "models" / "interrogate"
    models.interrogator.caption_options = FAST
    return models


def image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(24, 20, 3) * 255).astype(np.uint8), "RGB")


def moves_of(policy: WatchedPolicy, module) -> list[str]:
    return [where_to for moved, where_to in policy.moves if moved is module]


# 1. The device policy's decisions ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MemoryMode))
def test_policy_places_auxiliary_models_for_use_and_releases_them_per_memory_mode(mode):
    policy, module = watched(mode), torch.nn.Linear(2, 2)
    policy.place_for_use(module)
    assert where(module) == "cuda"
    policy.release_after_use(module)  # a model its caller keeps (upscalers)
    assert where(module) == ("cuda" if mode is MemoryMode.NORMAL else "cpu")
    policy.place_for_use(module)
    policy.release_after_use(module, keep=False)  # a model its caller does not keep (interrogation)
    assert where(module) == "cpu"
    assert (None, "empty_cache") in policy.moves  # what left the GPU is given back to the driver


def test_park_moves_a_checkpoint_part_to_the_cpu_only_without_offload_hooks():
    normal, medvram, module = watched(), watched(MemoryMode.MEDVRAM), torch.nn.Linear(2, 2)
    normal.park(module)
    assert moves_of(normal, module) == ["cpu"]
    medvram.park(module)  # the offload hooks own its placement (sequential offload leaves it on "meta")
    assert moves_of(medvram, module) == []


# 2. Interrogation models ---------------------------------------------------------------------------------
def test_interrogation_models_go_back_to_ram_after_use_by_default(data_dir):
    policy = watched()
    models = manager(data_dir, policy)
    first = models.interrogator.interrogate(image())
    blip, clip = models.interrogator.loaded_models()
    assert moves_of(policy, blip) == ["cuda", "cpu"] and moves_of(policy, clip) == ["cuda", "cpu"]
    assert where(blip) == where(clip) == "cpu"
    assert models.interrogator.interrogate(image()) == first  # kept in RAM: no reload, same result
    assert models.interrogator.loaded_models() == [blip, clip]


def test_the_keep_flag_leaves_interrogation_models_on_the_device(data_dir):
    assert parse_flags(["--interrogate-keep-models-in-memory"]).interrogate_keep_models_in_memory
    policy = watched()
    models = manager(data_dir, policy, "--interrogate-keep-models-in-memory")
    models.interrogator.interrogate(image())
    blip, clip = models.interrogator.loaded_models()
    assert where(blip) == where(clip) == "cuda"
    assert moves_of(policy, blip) == ["cuda"]


@pytest.mark.parametrize("mode", [MemoryMode.MEDVRAM, MemoryMode.LOWVRAM])
def test_medvram_and_lowvram_release_interrogation_models_even_with_the_keep_flag(data_dir, mode):
    policy = watched(mode)
    models = manager(data_dir, policy, "--interrogate-keep-models-in-memory")
    models.interrogator.interrogate(image())
    assert [where(m) for m in models.interrogator.loaded_models()] == ["cpu", "cpu"]


# 3. Upscaler models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MemoryMode))
def test_upscaler_models_are_placed_by_the_managers_policy(data_dir, mode):
    policy = watched(mode)
    models = manager(data_dir, policy)
    out = upscale(image(), UPSCALER, 2, data_dir / "models", models=models.upscalers)
    assert out.size == (40, 48)
    (model,) = models.upscalers.loaded()
    assert moves_of(policy, model)[0] == "cuda"  # on the device while it ran
    assert where(model) == ("cuda" if mode is MemoryMode.NORMAL else "cpu")


def test_no_module_level_upscaler_cache_and_managers_do_not_share(data_dir):
    assert not [name for name, value in vars(upscalers_module).items() if isinstance(value, UpscalerModels)]
    with pytest.raises(ValueError, match="needs the UpscalerModels"):
        upscale(image(), UPSCALER, 2, data_dir / "models")  # no hidden global to fall back on
    one, two = manager(data_dir), manager(data_dir)
    assert one.upscalers is not two.upscalers and one.interrogator is not two.interrogator
    upscale(image(), UPSCALER, 2, data_dir / "models", models=one.upscalers)
    assert len(one.upscalers.loaded()) == 1 and two.upscalers.loaded() == []


def test_sd_upscale_uses_the_engines_manager_for_its_upscaler(data_dir):
    from pipelines.generation.engine import Engine
    from pipelines.generation.requests import Img2ImgRequest
    from scripts.registry import run_with_params
    from scripts.sd_upscale import SdUpscaleParams

    models = manager(data_dir)
    models.load("a")
    engine = Engine(models, data_dir / "outputs")
    request = Img2ImgRequest(init_image=image().resize((64, 64)), width=64, height=64, steps=2, seed=1,
                             denoising_strength=0.5, save_images=False)
    # as the UI's scripts panel calls it: no upscaler owner passed, so the engine's manager is used
    run_with_params(engine, request, SdUpscaleParams(overlap=8, upscaler=UPSCALER, scale=2.0),
                    models_dir=data_dir / "models")
    assert models.upscalers.loads == 1 and len(models.upscalers.loaded()) == 1


# 4. A checkpoint switch frees every set of weights -------------------------------------------------------
def test_a_switch_frees_checkpoint_vaes_interrogation_and_upscaler_models(data_dir):
    policy = watched()
    models = manager(data_dir, policy)
    models.load("a")
    models.set_vae("v.safetensors")
    models.interrogator.interrogate(image())
    upscale(image(), UPSCALER, 2, data_dir / "models", models=models.upscalers)
    held = [models.current.components.unet, models.current.own_vae, models.current.components.vae,
            *models.interrogator.loaded_models(), *models.upscalers.loaded()]
    refs = [weakref.ref(obj) for obj in held]
    del held
    policy.moves.clear()
    models.load("b")
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs), "a previous set of weights is still referenced"
    assert models.upscalers.loaded() == [] and models.interrogator.loaded_models() == []
    assert (None, "empty_cache") in policy.moves


def test_the_checkpoints_own_vae_waits_on_the_cpu_while_a_vae_file_is_used(data_dir):
    policy = watched()
    models = manager(data_dir, policy)
    models.load("a")
    own = models.current.own_vae
    assert where(own) == "cuda" and models.current.components.vae is own
    models.set_vae("v.safetensors")
    assert where(own) == "cpu" and where(models.current.components.vae) == "cuda"
    assert models.current.vae_name == "v.safetensors"
    models.set_vae("None")  # back to the checkpoint's own: moved back, not read again from the file
    assert models.current.components.vae is own and where(own) == "cuda"


# 5. Failure modes ----------------------------------------------------------------------------------------
@pytest.fixture
def with_broken(data_dir):
    broken = data_dir / "models" / "Stable-diffusion" / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint at all")
    yield broken
    broken.unlink()


def test_a_failed_switch_reloads_the_previous_model_and_names_the_file(data_dir, with_broken):
    models = manager(data_dir)
    models.load("a")
    old_unet = weakref.ref(models.current.components.unet)
    with pytest.raises(CheckpointError) as caught:
        models.load("broken")
    message = str(caught.value)
    assert "broken.safetensors" in message and "so a [" in message and "] is loaded again" in message
    assert models.current.info.name == "a"
    gc.collect()
    assert old_unet() is None  # the old weights were freed before the new were read (peak: one model)


def test_a_failure_other_than_a_bad_file_is_named_too(data_dir, monkeypatch):
    import pipelines.models.model_manager as mm

    models = manager(data_dir)
    models.load("a")
    real = mm.load_checkpoint

    def out_of_memory(path, *args, **kwargs):
        if path.stem == "b":
            raise RuntimeError("CUDA out of memory")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mm, "load_checkpoint", out_of_memory)
    with pytest.raises(CheckpointError, match=r"b\.safetensors: RuntimeError: CUDA out of memory"):
        models.load("b")
    assert models.current.info.name == "a"


def test_when_recovery_fails_too_no_model_is_loaded_and_nothing_loads_silently(data_dir, monkeypatch):
    import pipelines.models.model_manager as mm

    models = manager(data_dir)
    models.load("a")
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path.stem)
        raise CheckpointError(f"{path}: unreadable")

    monkeypatch.setattr(mm, "load_checkpoint", failing)
    with pytest.raises(CheckpointError, match=r"loading a \[\w+\] again failed too"):
        models.load("b")
    assert calls == ["b", "a"]
    with pytest.raises(NoModelLoaded, match=r"b\.safetensors: unreadable"):
        models.current  # a getter reports; it never loads the start-up model behind the caller's back
    with pytest.raises(NoModelLoaded):
        models.pipeline("img2img")
    assert calls == ["b", "a"]


def test_current_before_any_load_is_an_error_not_a_load(data_dir):
    with pytest.raises(NoModelLoaded, match="no checkpoint is loaded"):
        manager(data_dir).current


def test_a_vae_file_deleted_from_disk_is_a_clear_error(data_dir):
    vae_dir = data_dir / "models" / "VAE"
    gone = vae_dir / "gone.safetensors"
    gone.write_bytes((vae_dir / "v.safetensors").read_bytes())
    gone.with_suffix(".json").write_bytes((vae_dir / "v.json").read_bytes())
    models = manager(data_dir)
    models.load("a")
    models.set_vae("gone.safetensors")
    gone.unlink()
    with pytest.raises(ModelNotFound, match=r"VAE file .*gone\.safetensors no longer exists; press refresh"):
        models.load("b")
    assert models.current.info.name == "a"  # checked before anything was freed
    with pytest.raises(ModelNotFound, match="no longer exists"):
        models.set_vae("gone.safetensors")
    models.refresh()  # gone from the list now; the choice still names it: still a clear error
    with pytest.raises(ModelNotFound, match="gone.safetensors no longer exists"):
        models.load("b")
    gone.with_suffix(".json").unlink()
    models.set_vae("None")
    models.load("b")
    assert models.current.info.name == "b" and models.vae_choice == "None"


# 6. A broken file never leaves the server without a model (issue 10) ---------------------------------------
def models_dir_with(root: Path, data_dir: Path, files: dict[str, bytes | str]) -> Path:
    """A data dir whose models/Stable-diffusion holds `files`: bytes as written, a str names a checkpoint of
    data_dir to copy."""
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for name, content in files.items():
        source = data_dir / "models" / "Stable-diffusion" / f"{content}.safetensors"
        (folder / name).write_bytes(source.read_bytes() if isinstance(content, str) else content)
        if isinstance(content, str):  # the tiny model's sizes, in its sidecar
            (folder / name).with_suffix(".json").write_bytes(source.with_suffix(".json").read_bytes())
    return root


def test_start_up_skips_an_unreadable_file_that_sorts_first_with_a_warning(data_dir, tmp_path, caplog):
    root = models_dir_with(tmp_path, data_dir, {"0-corrupt.safetensors": b"\x00garbage",
                                                "good.safetensors": "a"})
    models = manager(root)
    assert models.load(None).name == "good"
    assert models.current.info.name == "good"
    assert "Skipping checkpoint 0-corrupt" in caplog.text and "0-corrupt.safetensors" in caplog.text
    assert "Skipped at start-up (unreadable): " in models.status_line()
    assert "0-corrupt.safetensors" in models.status_line()


def test_start_up_with_only_broken_files_runs_the_demo_model(data_dir, tmp_path):
    root = models_dir_with(tmp_path, data_dir, {"bad.safetensors": b"nope", "worse.ckpt": b"\x80\x02junk"})
    models = manager(root)
    assert models.load(None).is_demo and models.is_demo
    assert [t.split(" ")[0] for t in models.checkpoint_titles()] == ["bad", "worse", "demo-untrained"]
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*|so demo-untrained is loaded again"):
        models.load("bad")
    assert models.is_demo  # a failed switch from the demo keeps the demo
    with pytest.raises(CheckpointError) as caught:
        models.load("worse")
    assert "worse.ckpt" in str(caught.value) and "so demo-untrained is loaded again" in str(caught.value)
    assert models.is_demo


def test_the_demo_model_stays_selectable_after_a_switch(data_dir):
    models = manager(data_dir)
    models.load("a")
    assert models.checkpoint_titles()[-1] == "demo-untrained"
    assert models.find_checkpoint("demo-untrained").is_demo
    assert models.load("demo-untrained").is_demo and models.is_demo
    models.refresh()
    assert "demo-untrained" in models.checkpoint_titles()
    models.load("a")
    assert models.current.info.name == "a"


def test_a_failed_vae_switch_keeps_the_vae_in_use_and_the_choice(data_dir):
    broken = data_dir / "models" / "VAE" / "broken.vae.safetensors"
    broken.write_bytes(b"not a vae")
    try:
        models = manager(data_dir)
        models.load("a")
        models.set_vae("v.safetensors")
        in_use = models.current.components.vae
        with pytest.raises(CheckpointError, match=r"broken\.vae\.safetensors"):
            models.set_vae("broken.vae.safetensors")
        assert models.vae_choice == "v.safetensors" and models.current.vae_name == "v.safetensors"
        assert models.current.components.vae is in_use
        models.unload()  # no model: the choice is still checked before it is recorded
        with pytest.raises(CheckpointError):
            models.set_vae("broken.vae.safetensors")
        assert models.vae_choice == "v.safetensors"
    finally:
        broken.unlink()
