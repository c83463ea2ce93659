"""Every set of weights is freed on a checkpoint switch: RSS (and GPU memory on CUDA) across cycles of
load A -> interrogate -> upscale -> switch to B -> switch back to A.

Writes into a temp models/ folder: two SD-architecture checkpoints (the demo model's layout, UNet widened),
a BLIP and a CLIP model in transformers format (widened tiny configs) with short category lists, and an
ESRGAN upscaler of the real RRDB size (64 filters, 23 blocks). Everything goes through one ModelManager,
which owns all of them. After each step it prints RSS, GPU memory allocated (CUDA only) and what the
manager still holds. If a set of weights survived a switch, each cycle would add its size: the last lines
give the growth per cycle, in MB and as a fraction of the smallest set. `--simulate-leak SET` keeps a
reference to that set across each switch, to show what a leak looks like here.

    .venv/bin/python bench/weights_freed.py [--cycles 4] [--medvram] [--simulate-leak upscaler]

Last line: `rss growth per cycle / smallest set: R` (about 0: nothing leaked; about 1 or more: a leak).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ldm_export import write_demo_variant  # noqa: E402
from model_switch_memory import rss_mb  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402
from pipelines.models.upscalers import _import_spandrel, upscale  # noqa: E402

MB = 2**20
UPSCALER = "4x-RRDB"


def vram_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / MB


def nbytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# 1. Weights on disk ---------------------------------------------------------------------------------------
def write_checkpoints(folder: Path) -> int:
    wide = write_demo_variant([folder / f"{name}.safetensors" for name in ("model-a", "model-b")],
                              block_out_channels=(128, 256), seed=0)
    return nbytes(wide.unet) + nbytes(wide.vae) + nbytes(wide.text_encoder)


def write_interrogation_models(models: Path) -> int:
    from test_interrogate import CATEGORY_FILES, _tiny_blip, _tiny_clip
    from transformers import BlipForConditionalGeneration, CLIPModel

    # the tests' tiny models, widened: their configs are read back and re-saved with more width and depth
    _tiny_blip(models / "BLIP")
    _tiny_clip(models / "CLIP")
    for cls, folder in ((BlipForConditionalGeneration, models / "BLIP"), (CLIPModel, models / "CLIP")):
        config = cls.from_pretrained(folder).config
        for part in (config.text_config, config.vision_config):
            part.hidden_size, part.intermediate_size, part.num_hidden_layers = 256, 1024, 4
        config.projection_dim = 128
        if hasattr(config.text_config, "encoder_hidden_size"):  # BLIP's decoder attends to the vision side
            config.text_config.encoder_hidden_size = 256
        torch.manual_seed(0)
        cls(config).save_pretrained(folder)
    (models / "interrogate").mkdir()
    for name, text in CATEGORY_FILES.items():
        (models / "interrogate" / name).write_text(text, encoding="utf-8")
    return sum(nbytes(cls.from_pretrained(folder)) for cls, folder in
               ((BlipForConditionalGeneration, models / "BLIP"), (CLIPModel, models / "CLIP")))


def write_upscaler(models: Path) -> int:
    _import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    (models / "ESRGAN").mkdir(parents=True)
    save_file(model.state_dict(), models / "ESRGAN" / f"{UPSCALER}.safetensors")
    return nbytes(model)


# 2. The cycles --------------------------------------------------------------------------------------------
def held(models: ModelManager) -> str:
    checkpoint = "yes" if models._current is not None else "no"
    return (f"checkpoint={checkpoint} interrogation={len(models.interrogator.loaded_models())} "
            f"upscalers={len(models.upscalers.loaded())}")


def report(step: str, models: ModelManager, readings: list[tuple[str, float, float | None]]) -> None:
    gc.collect()
    rss, vram = rss_mb(), vram_mb()
    readings.append((step, rss, vram))
    gpu = f"  vram {vram:7.1f} MB" if vram is not None else ""
    print(f"{step:<28} rss {rss:7.0f} MB{gpu}   holds: {held(models)}", flush=True)


def leaked_refs(models: ModelManager, which: str) -> list:
    if which == "upscaler":
        return models.upscalers.loaded()
    if which == "interrogator":
        return models.interrogator.loaded_models()
    return [models.current.components] if which == "checkpoint" else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--medvram", action="store_true")
    ap.add_argument("--simulate-leak", choices=["none", "checkpoint", "interrogator", "upscaler"],
                    default="none")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-weights-"))
    sizes = {"checkpoint": write_checkpoints(data / "models" / "Stable-diffusion"),
             "interrogation (BLIP+CLIP)": write_interrogation_models(data / "models"),
             "upscaler": write_upscaler(data / "models")}
    gc.collect()
    settings = parse_flags(["--data-dir", str(data)] + (["--medvram"] if args.medvram else []))
    policy = DevicePolicy.from_settings(settings)
    models = ModelManager(settings, policy)
    models.interrogator.categories_dir = data / "models" / "interrogate"
    print(f"policy: {policy.describe()}; pid {os.getpid()}")
    print("sizes (fp32 parameters): " + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in sizes.items()))
    picture = Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8), "RGB")
    readings: list[tuple[str, float, float | None]] = []
    kept: list = []  # --simulate-leak: references that survive the switches
    report("start", models, readings)
    for cycle in range(1, args.cycles + 1):
        models.load("model-a")
        models.pipeline("img2img")
        report(f"[{cycle}] load A", models, readings)
        models.interrogator.interrogate(picture)
        report(f"[{cycle}] interrogate", models, readings)
        upscale(picture, UPSCALER, 4, data / "models", models=models.upscalers)
        report(f"[{cycle}] upscale", models, readings)
        kept += leaked_refs(models, args.simulate_leak)
        models.load("model-b")
        models.pipeline("img2img")
        report(f"[{cycle}] switch to B", models, readings)
        models.load("model-a")
        models.pipeline("img2img")
        report(f"[{cycle}] switch back to A", models, readings)
    ends = [r for r in readings if r[0].endswith("switch back to A")]
    smallest = min(sizes.values()) / MB
    if len(ends) >= 2:
        rss_growth = (ends[-1][1] - ends[0][1]) / (len(ends) - 1)
        print(f"rss after cycle 1 / last: {ends[0][1]:.0f} / {ends[-1][1]:.0f} MB; "
              f"growth per cycle {rss_growth:+.1f} MB")
        if ends[0][2] is not None:
            vram_growth = (ends[-1][2] - ends[0][2]) / (len(ends) - 1)
            print(f"vram after cycle 1 / last: {ends[0][2]:.1f} / {ends[-1][2]:.1f} MB; "
                  f"growth per cycle {vram_growth:+.2f} MB (vram growth / smallest set: "
                  f"{vram_growth / smallest:.2f})")
        print(f"rss growth per cycle / smallest set: {rss_growth / smallest:.2f}")


if __name__ == "__main__":
    main()
