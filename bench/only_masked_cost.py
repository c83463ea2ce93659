"""Only-masked inpainting costs what the target size costs, not what the image size costs.

Inpaints the same 64x64 mask (Only masked, target 512x512, demo model, 20 steps, strength 0.75) on a
2048x2048 image and on a 512x512 image, alternating, and compares the medians.

    .venv/bin/python bench/only_masked_cost.py [--rounds 5]

Last line: `only-masked 2048/512 median time ratio: R` (target R <= 1.3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.fields import InpaintArea
from pipelines.generation.engine import Engine  # noqa: E402
from pipelines.generation.requests import Img2ImgRequest  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402


def scene(size: int) -> tuple[Image.Image, Image.Image]:
    rng = np.random.RandomState(0)
    cells = rng.randint(0, 255, (size // 64, size // 64, 3)).astype("uint8")
    image = Image.fromarray(cells, "RGB").resize((size, size), Image.BILINEAR)
    mask = Image.new("L", (size, size), 0)
    c = size // 2
    ImageDraw.Draw(mask).rectangle((c - 32, c - 32, c + 31, c + 31), fill=255)
    return image, mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    settings = parse_flags(["--data-dir", tempfile.mkdtemp(prefix="bench-")])
    policy = DevicePolicy.from_settings(settings)
    models = ModelManager(settings, policy)
    models.load(None)
    engine = Engine(models, settings.outputs_dir)
    requests = {}
    for size in (2048, 512):
        image, mask = scene(size)
        requests[size] = Img2ImgRequest(init_image=image, mask=mask, prompt="a stone", width=512, height=512,
                                        steps=20, denoising_strength=0.75, seed=1, save_images=False,
                                        inpaint_area=InpaintArea.ONLY_MASKED, only_masked_padding=32)
    print(f"device: {policy.describe()}; model: {models.current.info.title}")
    for req in requests.values():  # warm-up
        engine.img2img(req)
    times: dict[int, list[float]] = {2048: [], 512: []}
    for r in range(args.rounds):
        for size, req in requests.items():
            start = time.perf_counter()
            out = engine.img2img(req)
            times[size].append(time.perf_counter() - start)
            assert out.images[0].size == (size, size)
        print(f"round {r + 1}: 2048 {times[2048][-1]:.3f}s  512 {times[512][-1]:.3f}s")
    big, small = statistics.median(times[2048]), statistics.median(times[512])
    print(f"median 2048 {big:.3f}s, 512 {small:.3f}s")
    print(f"only-masked 2048/512 median time ratio: {big / small:.3f}")


if __name__ == "__main__":
    main()
