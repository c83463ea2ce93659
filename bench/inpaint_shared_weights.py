"""img2img and inpaint pipelines share one set of weights: the process RSS a second pipeline adds over the
loaded model, next to what a pipeline over a copy of the weights adds (the control that shows a copy).

Writes a 9-channel (sd-v1-5-inpainting layout) checkpoint, the demo architecture widened to a few hundred MB,
loads it, runs an inpaint job (the inpaint pipeline), then builds the img2img pipeline the same model serves
and reads RSS; then builds one more pipeline over a deep copy of the components and reads RSS again.

    .venv/bin/python bench/inpaint_shared_weights.py

Last line: `second pipeline adds P% of a weight copy` (target <= 5%: shared; ~100%: copied).
"""

from __future__ import annotations

import copy
import gc
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ldm_export import write_demo_variant  # noqa: E402
from model_switch_memory import rss_mb  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.generation.engine import Engine  # noqa: E402
from pipelines.generation.requests import Img2ImgRequest  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402
from pipelines.models.sd_pipelines import build_img2img_pipeline  # noqa: E402


def settled_rss() -> float:
    gc.collect()
    return rss_mb()


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-inpaint-"))
    write_demo_variant([data / "models" / "Stable-diffusion" / "inpainting.safetensors"], in_channels=9,
                       block_out_channels=(256, 512), seed=0)
    settings = parse_flags(["--data-dir", str(data)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    models.load(None)
    engine = Engine(models, settings.outputs_dir)
    image = Image.new("RGB", (256, 256), (90, 140, 200))
    mask = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(mask).rectangle((64, 64, 191, 191), fill=255)
    engine.img2img(Img2ImgRequest(init_image=image, mask=mask, prompt="a boat", width=256, height=256, steps=4,
                                  seed=1, save_images=False))
    one_pipeline = settled_rss()
    shared = models.pipeline("img2img")  # the second pipeline the model serves, over the same components
    two_pipelines = settled_rss()
    copied = build_img2img_pipeline(copy.deepcopy(models.current.components))  # the control
    with_copy = settled_rss()
    assert shared is not None and copied is not None
    added, copy_cost = two_pipelines - one_pipeline, with_copy - two_pipelines
    print(f"rss: one pipeline {one_pipeline:.0f} MB, two pipelines {two_pipelines:.0f} MB, "
          f"plus a pipeline over copied weights {with_copy:.0f} MB")
    print(f"second pipeline adds {added:.0f} MB; a copy of the weights adds {copy_cost:.0f} MB")
    print(f"second pipeline adds {100 * added / max(copy_cost, 1e-9):.1f}% of a weight copy")


if __name__ == "__main__":
    main()
