"""Engine vs bare diffusers on the same img2img job, alternating A B A B, medians compared.

The job: demo model, 512x512, 20 steps, denoising 0.75 (15 UNet steps), Euler a, CFG 7, seed 1234.
A = pipelines.generation.engine.Engine.img2img (validation, resize, chunked prompt encoding, seeded noise,
progress callback with latent previews, infotext; saving off). B = a plain
StableDiffusionImg2ImgPipeline built from the very same components, called with the PIL image.

    .venv/bin/python bench/engine_overhead.py [--rounds 5] [--size 512]

Last line: `engine/diffusers median time ratio: R` (target R <= 1.05).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionImg2ImgPipeline  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.generation.engine import Engine  # noqa: E402
from pipelines.generation.requests import Img2ImgRequest  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402

PROMPT = "a watercolor painting of a lighthouse at dusk, soft light"


def test_image(size: int) -> Image.Image:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    rgb = torch.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).to(torch.uint8)
    return Image.fromarray(rgb.numpy(), "RGB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--data-dir", default=None, help="default: an empty temp dir (demo model)")
    args = ap.parse_args()
    import tempfile

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench-")
    settings = parse_flags(["--data-dir", data_dir])
    policy = DevicePolicy.from_settings(settings)
    models = ModelManager(settings, policy)
    models.load(None)
    engine = Engine(models, settings.outputs_dir)
    components = models.current.components
    bare = StableDiffusionImg2ImgPipeline(**components.as_dict(), safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    bare.set_progress_bar_config(disable=True)
    bare.scheduler = EulerAncestralDiscreteScheduler.from_config(components.scheduler.config)
    image = test_image(args.size)
    request = Img2ImgRequest(init_image=image, prompt=PROMPT, width=args.size, height=args.size, steps=20,
                             denoising_strength=0.75, sampler_name="Euler a", cfg_scale=7, seed=1234,
                             save_images=False)

    def run_engine() -> None:
        engine.img2img(request)

    def run_bare() -> None:
        bare(prompt=PROMPT, image=image, strength=0.75, num_inference_steps=20, guidance_scale=7,
             generator=torch.Generator("cpu").manual_seed(1234))

    print(f"device: {policy.describe()}; model: {models.current.info.title}; torch threads: {torch.get_num_threads()}")
    run_engine(), run_bare()  # warm-up: first calls pay one-off allocation costs
    times: dict[str, list[float]] = {"engine": [], "diffusers": []}
    for r in range(args.rounds):
        for name, fn in (("engine", run_engine), ("diffusers", run_bare)):
            if policy.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if policy.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: engine {times['engine'][-1]:.3f}s  diffusers {times['diffusers'][-1]:.3f}s")
    med_e, med_d = statistics.median(times["engine"]), statistics.median(times["diffusers"])
    print(f"median engine {med_e:.3f}s, diffusers {med_d:.3f}s")
    print(f"engine/diffusers median time ratio: {med_e / med_d:.3f}")


if __name__ == "__main__":
    main()
