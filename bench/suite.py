"""Performance suite: an SD 1.5-sized model (random weights, no download) through the engine, each figure
against bare diffusers (or the option off) in the same process, alternating runs.

    .venv/bin/python bench/suite.py                      # every section; CPU sizes, or full sizes on CUDA
    .venv/bin/python bench/suite.py --sections img2img,preview --rounds 3
    .venv/bin/python bench/suite.py --gpu-full           # 512x512, 20 steps, memory at 512 and 1024

Sections: load (checkpoint load vs raw safetensors read), img2img, inpaint (4-channel), preview (every
step vs none), options (channels_last, torch.compile, fused QKV, bf16 on CPUs with fast bf16), tiling
(VAE decode of a 2048x2048 picture), memory (normal / medvram / lowvram), startup (app.py to HTTP 200).
Prints a table; writes every row to bench/results/suite-<device>.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite_sections as sections  # noqa: E402
import torch  # noqa: E402
from suite_model import close_bench, environment, free_port, open_bench, write_sd15_checkpoint  # noqa: E402
from suite_options import speed_options  # noqa: E402

ALL_SECTIONS = ("load", "img2img", "inpaint", "preview", "options", "tiling", "memory", "startup")
COLUMNS = ("engine_s", "diffusers_s", "engine_it_s", "diffusers_it_s", "on_s", "off_s", "previews_s", "none_s",
           "loader_s", "raw_s", "tokenizer_s", "seconds", "compile_s", "peak_mib", "peak_vs_normal",
           "time_vs_normal", "max_pixel_diff", "ratio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(ALL_SECTIONS), help=f"comma list of {', '.join(ALL_SECTIONS)}")
    ap.add_argument("--gpu-full", action="store_true", help="full sizes (default on CUDA): 512 px, 20 steps")
    ap.add_argument("--size", type=int, help="img2img side in px (CPU default 128)")
    ap.add_argument("--steps", type=int, help="sampling steps (CPU default 4)")
    ap.add_argument("--rounds", type=int, help="alternating rounds per comparison (CPU default 2)")
    ap.add_argument("--batches", help="comma list of batch sizes (default 1,4)")
    ap.add_argument("--tile-latent", type=int, help="latent side of the tiling decode (CUDA 256 = 2048 px, CPU 136)")
    ap.add_argument("--compile", action="store_true", help="include torch.compile in options (slow to compile)")
    ap.add_argument("--work-dir", type=Path, help="where the checkpoint is written (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="output file (default bench/results/suite-<device>.json)")
    args = ap.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(ALL_SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(ALL_SECTIONS)}")
    return args


def pick_sizes(args: argparse.Namespace) -> sections.Sizes:
    sizes = sections.GPU_SIZES if (args.gpu_full or torch.cuda.is_available()) else sections.CPU_SIZES
    changes = {k: v for k, v in (("size", args.size), ("steps", args.steps), ("rounds", args.rounds),
                                 ("tile_latent", args.tile_latent)) if v is not None}
    if args.batches:
        changes["batches"] = tuple(int(b) for b in args.batches.split(","))
    if args.size and not torch.cuda.is_available():
        changes["memory_sizes"] = (args.size,)
    return replace(sizes, **changes)


def run(args: argparse.Namespace) -> list[dict]:
    wanted = args.sections.split(",")
    sizes = pick_sizes(args)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="suite-"))
    data_dir = work / "data"
    rows: list[dict] = []
    needs_model = set(wanted) - {"startup"}
    if needs_model:
        started = time.perf_counter()
        path = write_sd15_checkpoint(_checkpoint_dir(data_dir))
        print(f"checkpoint {path} ready in {time.perf_counter() - started:.1f}s", flush=True)
    if "load" in wanted:
        rows += _report(sections.checkpoint_load(path, max(2, sizes.rounds)))
    bench = open_bench(data_dir) if needs_model - {"load"} else None
    if bench is not None:
        print(f"model loaded by the app in {bench.load_seconds:.1f}s ({bench.policy.describe()})", flush=True)
        for name, section in (("img2img", lambda: sections.speed_vs_diffusers(bench, sizes, False)),
                              ("inpaint", lambda: sections.speed_vs_diffusers(bench, sizes, True)),
                              ("preview", lambda: sections.preview_cost(bench, sizes)),
                              ("options", lambda: speed_options(bench, sizes, args.compile)),
                              ("tiling", lambda: sections.vae_tiling(bench, sizes))):
            if name in wanted:
                rows += _report(section())
        if "memory" in wanted:
            rows += _report(sections.memory_modes(data_dir, sizes, bench))  # closes the bench itself
        else:
            close_bench(bench)
    if "startup" in wanted:
        rows += _report(sections.startup(work / "startup-data", free_port()))
    return rows


def _checkpoint_dir(data_dir: Path) -> Path:
    folder = data_dir / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _report(rows: list[dict]) -> list[dict]:
    for row in rows:
        print("  " + json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    used = [c for c in COLUMNS if any(c in row for row in rows)]
    header = ["section", "case", *used]
    lines = [header] + [[str(row.get(c, "")) for c in header] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = environment()
    print(f"environment: {json.dumps(env)}", flush=True)
    rows = run(args)
    print()
    print(table(rows))
    notes = {f"{row['section']}/{row['case']}": row["note"] for row in rows if row.get("note")}
    for key, note in notes.items():
        print(f"  {key}: {note}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.json or Path(__file__).resolve().parent / "results" / f"suite-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "sizes": vars(pick_sizes(args)), "rows": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
