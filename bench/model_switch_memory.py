"""Switching checkpoints frees the previous one: process RSS after each switch stays flat.

Writes two SD-architecture checkpoints (the demo model's layout widened to a few hundred MB, LDM single-file
layout) into a temp models/ folder, then loads A, B, A, B, ... through ModelManager and prints the RSS after
each load. If the old model leaked, RSS would grow by one model size per switch.

    .venv/bin/python bench/model_switch_memory.py [--switches 6]

Last line: `rss growth over N switches / one model size: R` (0 = nothing leaked; 1 = one model leaked).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ldm_export import write_demo_variant  # noqa: E402

from pipelines.device_policy import DevicePolicy  # noqa: E402
from pipelines.launch_flags import parse_flags  # noqa: E402
from pipelines.models.model_manager import ModelManager  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def write_models(folder: Path) -> int:
    big = write_demo_variant([folder / f"{name}.safetensors" for name in ("model-a", "model-b")],
                             block_out_channels=(256, 512), seed=0)
    return sum(p.numel() * p.element_size() for p in big.unet.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switches", type=int, default=6)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    size_mb = write_models(data / "models" / "Stable-diffusion") / 2**20
    gc.collect()
    settings = parse_flags(["--data-dir", str(data)])
    models = ModelManager(settings, DevicePolicy.from_settings(settings))
    print(f"model size (UNet weights): {size_mb:.0f} MB; pid {os.getpid()}")
    readings = []
    for i in range(args.switches + 1):
        name = "model-a" if i % 2 == 0 else "model-b"
        models.load(name)
        models.pipeline("img2img")
        gc.collect()
        readings.append(rss_mb())
        print(f"loaded {name}: rss {readings[-1]:.0f} MB")
    growth = readings[-1] - readings[1]
    print(json.dumps({"rss_after_first_mb": round(readings[0]), "rss_last_mb": round(readings[-1])}))
    print(f"rss growth over {args.switches - 1} switches / one model size: {growth / size_mb:.2f}")


if __name__ == "__main__":
    main()
