"""img2img and inpaint share one set of weights: process RSS after an inpaint run, measured after an img2img
run on the same 9-channel checkpoint, must not grow by more than 5%.

Writes a 9-channel (sd-v1-5-inpainting layout) checkpoint, the demo architecture widened to a few hundred MB,
loads it, runs img2img, reads RSS, runs inpaint, reads RSS again.

    .venv/bin/python bench/inpaint_shared_weights.py

Last line: `rss growth img2img -> inpaint: P%` (target <= 5%).
"""

from __future__ import annotations

import gc
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from ldm_export import write_checkpoint  # noqa: E402
from model_switch_memory import rss_mb  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.generation.engine import Engine  # noqa: E402
from pipelines.generation.requests import Img2ImgRequest  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.components import SDComponents  # noqa: E402
from pipelines.models.demo_model import build_demo_components  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-inpaint-"))
    demo = build_demo_components()
    config = dict(demo.unet.config) | {"in_channels": 9, "block_out_channels": [256, 512]}
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config)
    write_checkpoint(SDComponents(unet, demo.vae, demo.text_encoder, demo.tokenizer, demo.scheduler),
                     data / "models" / "Stable-diffusion" / "inpainting.safetensors")
    del unet, demo
    gc.collect()
    settings = parse_flags(["--data-dir", str(data)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir)
    image = Image.new("RGB", (256, 256), (90, 140, 200))
    mask = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(mask).rectangle((64, 64, 191, 191), fill=255)
    base = Img2ImgRequest(init_image=image, prompt="a boat", width=256, height=256, steps=4, seed=1,
                          save_images=False)
    engine.img2img(base)
    gc.collect()
    after_img2img = rss_mb()
    engine.img2img(base.replace(mask=mask))
    gc.collect()
    after_inpaint = rss_mb()
    print(f"rss after img2img {after_img2img:.0f} MB, after inpaint {after_inpaint:.0f} MB")
    print(f"rss growth img2img -> inpaint: {100 * (after_inpaint - after_img2img) / after_img2img:.1f}%")


if __name__ == "__main__":
    main()
