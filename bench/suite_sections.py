"""The benchmark suite's sections. Each returns rows: {"section", "case", ... figures ..., "note"}.

Every comparison runs both sides in the same process on the same components, alternating A B A B, and
reports medians; "ratio" is always engine (or option-on) time over diffusers (or option-off) time, so
below 1 is faster.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from suite_model import (
    ROOT,
    Bench,
    PeakMemory,
    alternate,
    bare_call,
    bare_pipeline,
    close_bench,
    engine_request,
    median,
    open_bench,
    synchronize,
)

Row = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    size: int  # img2img / inpaint width = height
    steps: int
    rounds: int
    batches: tuple[int, ...]
    memory_sizes: tuple[int, ...]  # sizes for the normal / medvram / lowvram section
    tile_latent: int  # latent side of the tiling decode (256 -> a 2048 px picture)


CPU_SIZES = Sizes(size=128, steps=4, rounds=2, batches=(1, 4), memory_sizes=(128,), tile_latent=136)
GPU_SIZES = Sizes(size=512, steps=20, rounds=3, batches=(1, 4), memory_sizes=(512, 1024), tile_latent=256)


def _timed_pair(name: str, case: str, times: dict[str, list[float]], steps: int, a: str, b: str) -> Row:
    ta, tb = median(times[a]), median(times[b])
    return {"section": name, "case": case, f"{a}_s": round(ta, 3), f"{b}_s": round(tb, 3),
            f"{a}_it_s": round(steps / ta, 3), f"{b}_it_s": round(steps / tb, 3), "ratio": round(ta / tb, 3)}


# 1 + 2. Engine vs bare diffusers -----------------------------------------------------------------------
def speed_vs_diffusers(bench: Bench, sizes: Sizes, inpaint: bool) -> list[Row]:
    """img2img (or 4-channel inpaint) at strength 1.0: the engine against diffusers' own pipeline."""
    name = "inpaint" if inpaint else "img2img"
    pipe = bare_pipeline(bench, name)
    rows = []
    for batch in sizes.batches:
        request = engine_request(sizes.size, sizes.steps, batch, inpaint)
        runs = {"engine": lambda r=request: bench.engine.img2img(r),
                "diffusers": bare_call(pipe, sizes.size, sizes.steps, batch, inpaint)}
        times = alternate(runs, sizes.rounds, bench.device)
        row = _timed_pair(name, f"{sizes.size}px {sizes.steps} steps batch {batch}", times, sizes.steps,
                          "engine", "diffusers")
        row["note"] = "time ratio engine/diffusers (target <= 1.02); it/s = steps / whole call"
        rows.append(row)
    return rows


# 3. Memory modes ----------------------------------------------------------------------------------------
MODES = (("normal", ()), ("medvram", ("--medvram",)), ("lowvram", ("--lowvram",)))


def memory_modes(data_dir: Path, sizes: Sizes, bench: Bench | None) -> list[Row]:
    """Peak memory and speed of one img2img run per memory mode (each its own ModelManager)."""
    rows = []
    on_gpu = torch.cuda.is_available()
    for mode, flags in MODES:
        if not on_gpu and mode != "normal":
            rows.append({"section": "memory", "case": mode, "note": "n/a on the CPU: offloading only "
                         "applies to a CUDA GPU (the policy runs normal mode and says so)"})
            continue
        if bench is not None and mode != "normal":
            close_bench(bench)
            bench = None
        current = bench if (bench is not None and mode == "normal") else open_bench(data_dir, flags)
        for size in sizes.memory_sizes:
            request = engine_request(size, sizes.steps, 1)
            current.engine.img2img(request)  # warm-up
            meter = PeakMemory(current.device)
            with meter.measure():
                synchronize(current.device)
                started = time.perf_counter()
                current.engine.img2img(request)
                synchronize(current.device)
                seconds = time.perf_counter() - started
            rows.append({"section": "memory", "case": f"{mode} {size}px", "peak_mib": round(meter.peak_mib, 1),
                         "engine_s": round(seconds, 3), "engine_it_s": round(sizes.steps / seconds, 3),
                         "note": "CUDA: max_memory_allocated, weights included; CPU: peak RSS above the loaded model"})
        if current is not bench:
            close_bench(current)
    base = {r["case"].split()[1]: r for r in rows if r["case"].startswith("normal") and "peak_mib" in r}
    for row in rows:
        normal = base.get(row["case"].split()[-1]) if "peak_mib" in row else None
        if normal is not None and row is not normal:
            row["peak_vs_normal"] = round(row["peak_mib"] / normal["peak_mib"], 3)
            row["time_vs_normal"] = round(row["engine_s"] / normal["engine_s"], 3)
    return rows


# 4. Preview cost ---------------------------------------------------------------------------------------
def preview_cost(bench: Bench, sizes: Sizes) -> list[Row]:
    """The same run with a live preview at every step against none (target: under 3% slower)."""
    request = engine_request(sizes.size, sizes.steps, 1)
    engine = bench.engine

    def run(every: int) -> None:
        engine.preview_every = every
        engine.img2img(request)

    times = alternate({"previews": lambda: run(1), "none": lambda: run(0)}, sizes.rounds + 1, bench.device)
    engine.preview_every = 0
    row = _timed_pair("preview", f"{sizes.size}px every step", times, sizes.steps, "previews", "none")
    row["note"] = "time ratio with previews/without (target < 1.03)"
    return [row]


# 5. Start-up and checkpoint load -------------------------------------------------------------------------
def startup(data_dir: Path, port: int, timeout: float = 120.0) -> list[Row]:
    """python app.py (demo model: an empty data dir) until its page answers HTTP 200."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir",
                                str(data_dir)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    seconds = float("nan")
    try:
        while time.perf_counter() - started < timeout and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        seconds = time.perf_counter() - started
                        break
            except OSError:
                time.sleep(0.1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return [{"section": "startup", "case": "app.py to HTTP 200 (demo model)", "seconds": round(seconds, 2),
             "note": "target < 15 s on the 2-core machine"}]


def checkpoint_load(path: Path, rounds: int) -> list[Row]:
    """The app's loader on the fp16 single file (into fp16 models) against safetensors' raw tensor read."""
    from safetensors.torch import load_file  # noqa: PLC0415

    from pipelines.models.checkpoint_loader import load_checkpoint, shipped_tokenizer  # noqa: PLC0415

    def loader() -> None:
        load_checkpoint(path, torch.float16)
        gc.collect()

    def raw() -> None:
        load_file(str(path))
        gc.collect()

    times = alternate({"loader": loader, "raw": raw, "tokenizer": shipped_tokenizer}, rounds, torch.device("cpu"))
    tl, tr, tt = median(times["loader"]), median(times["raw"]), median(times["tokenizer"])
    size_gib = path.stat().st_size / 2**30
    return [{"section": "load", "case": f"SD 1.5 fp16 safetensors ({size_gib:.2f} GiB)", "loader_s": round(tl, 2),
             "raw_s": round(tr, 2), "tokenizer_s": round(tt, 2), "ratio": round(tl / tr, 3),
             "note": "time ratio loader/raw read (target <= 1.5), warm page cache; tokenizer_s: the part of "
                     "the loader that reads the CLIP tokenizer (a constant, whatever the file's size)"}]


# VAE tiling --------------------------------------------------------------------------------------------
def vae_tiling(bench: Bench, sizes: Sizes) -> list[Row]:
    """Decoding one big latent (256x256 -> 2048x2048 px) with and without the engine's tiling."""
    from pipelines.models.vae_codec import decode_latents  # noqa: PLC0415

    vae = bench.models.current.components.vae
    side = sizes.tile_latent
    generator = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn((1, 4, side, side), generator=generator).to(bench.device, vae.dtype)
    rows = []
    for case, tiling in (("tiled", True), ("untiled", False)):
        meter = PeakMemory(bench.device)
        with meter.measure():
            started = time.perf_counter()
            pixels = decode_latents(vae, latents, tiling=tiling)
            synchronize(bench.device)
            seconds = time.perf_counter() - started
        finite = bool(torch.isfinite(pixels).all())
        rows.append({"section": "vae-tiling", "case": f"decode {side * 8}x{side * 8} {case}",
                     "peak_mib": round(meter.peak_mib, 1), "seconds": round(seconds, 2),
                     "note": f"output {tuple(pixels.shape)}, finite={finite}"})
        del pixels
        gc.collect()
    return rows
