"""SD upscale with tiles batched through the UNet (batch size 4) vs one tile per call (batch size 1).

The job: demo model, a 512x512 image upscaled x2 (Lanczos) to 1024x1024, 512x512 tiles with 64 px overlap
(3 x 3 = 9 tiles: batch size 4 makes 3 engine calls of 4, 4 and 1 tiles; batch size 1 makes 9), 20 steps at
denoising 0.3 (6 UNet steps per tile), Euler a, CFG 7, seed 1234, saving off. Runs alternate A B A B ...
after one untimed warm-up of each; medians are compared.

    .venv/bin/python bench/sd_upscale_batch.py [--rounds 3] [--steps 20] [--strength 0.3]

Last line: `sd-upscale batch4/batch1 median time ratio: R` (below 1: batching is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.generation.engine import Engine  # noqa: E402
from pipelines.generation.requests import Img2ImgRequest  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402
from scripts.common import ScriptContext  # noqa: E402
from scripts.sd_upscale import SdUpscaleParams, run  # noqa: E402


def test_image(size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each (at least 3)")
    ap.add_argument("--size", type=int, default=512, help="source side and tile side")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=0.3)
    args = ap.parse_args()
    rounds = max(3, args.rounds)

    data_dir = tempfile.mkdtemp(prefix="bench-sd-upscale-")
    settings = parse_flags(["--data-dir", data_dir])
    policy = DevicePolicy.from_settings(settings)
    models = ModelManager(settings, policy)
    models.load(None)
    engine = Engine(models, settings.outputs_dir, preview_every=0)
    context = ScriptContext(models_dir=settings.models_dir)
    params = SdUpscaleParams(overlap=64, upscaler="Lanczos", scale=2.0)
    base = Img2ImgRequest(init_image=test_image(args.size), prompt="a lighthouse at dusk, detailed",
                          width=args.size, height=args.size, steps=args.steps,
                          denoising_strength=args.strength, seed=1234, save_images=False)
    requests = {"batch4": base.replace(batch_size=4), "batch1": base.replace(batch_size=1)}
    print(f"device: {policy.describe()}; {args.size}x{args.size} x2 -> 9 tiles of {args.size}, "
          f"{int(args.steps * args.strength)} UNet steps per tile")

    def timed(name: str) -> float:
        started = time.perf_counter()
        result = run(engine, requests[name], params, context=context)
        elapsed = time.perf_counter() - started
        assert result.images[0].size == (2 * args.size, 2 * args.size)
        return elapsed

    for name in requests:  # warm-up: first-call allocations, cudnn/oneDNN plans
        timed(name)
    times: dict[str, list[float]] = {name: [] for name in requests}
    for round_index in range(rounds):
        for name in requests:
            times[name].append(timed(name))
        line = ", ".join(f"{n} {times[n][-1]:.2f}s" for n in requests)
        print(f"round {round_index + 1}: {line}", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(", ".join(f"{n} median {m:.2f}s" for n, m in medians.items()))
    print(f"sd-upscale batch4/batch1 median time ratio: {medians['batch4'] / medians['batch1']:.3f}")


if __name__ == "__main__":
    main()
