"""The suite's opt-in speed options: each toggled on the loaded UNet, the engine run with it on and off
alternately (same request, same seed); the largest pixel difference between the two outputs says whether
the option keeps the picture. torch.compile's compile time is reported apart from its steady speed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from suite_model import Bench, alternate, cpu_speed_flags, engine_request, median, synchronize

from pipelines.device_policy import SpeedOptions, apply_speed_options


def _contiguous(unet: Any) -> None:
    unet.to(memory_format=torch.contiguous_format)


def _uncompile(unet: Any) -> None:
    unet._compiled_call_impl = None


def _options(bench: Bench, with_compile: bool) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    components = bench.models.current.components
    unet = components.unet
    options = [
        ("channels_last", lambda: apply_speed_options(unet, SpeedOptions(channels_last=True)),
         lambda: _contiguous(unet)),
        ("fuse_qkv", lambda: apply_speed_options(unet, SpeedOptions(fuse_qkv=True)),
         lambda: unet.set_attn_processor(AttnProcessor2_0())),  # diffusers' unfuse works only once
    ]
    if with_compile:
        options.append(("compile", lambda: apply_speed_options(unet, SpeedOptions(compile_unet=True)),
                        lambda: _uncompile(unet)))
    fast_bf16 = {"avx512_bf16", "amx_bf16"} & cpu_speed_flags()
    if bench.device.type == "cpu" and fast_bf16:
        # last: going back to fp32 keeps the bf16-rounded weights (timings do not depend on their values)
        dtype = components.unet.dtype
        options.append(("bf16", lambda: _to(components, torch.bfloat16), lambda: _to(components, dtype)))
    return options


def _to(components: Any, dtype: torch.dtype) -> None:
    components.unet.to(dtype)
    components.text_encoder.to(dtype)


def speed_options(bench: Bench, sizes: Any, with_compile: bool = False) -> list[dict]:
    request = engine_request(sizes.size, sizes.steps, 1)
    rows = []
    for name, on, off in _options(bench, with_compile):
        pictures: dict[str, list] = {}

        def engine_with(state: str, switch: Callable[[], None]) -> Callable[[], None]:
            def call() -> None:
                switch()
                pictures[state] = bench.engine.img2img(request).images
            return call

        compile_s = None
        if name == "compile":
            compile_s = _compile_seconds(bench, request, on, off)
        times = alternate({"on": engine_with("on", on), "off": engine_with("off", off)}, sizes.rounds, bench.device)
        off()
        ton, toff = median(times["on"]), median(times["off"])
        diff = max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
                   for a, b in zip(pictures["on"], pictures["off"]))
        row = {"section": "options", "case": f"{name} {sizes.size}px b1", "on_s": round(ton, 3),
               "off_s": round(toff, 3), "ratio": round(ton / toff, 3), "max_pixel_diff": diff,
               "note": "time ratio option on/off (< 1 is faster); max_pixel_diff of the outputs (0-255)"}
        if compile_s is not None:
            row["compile_s"] = round(compile_s, 1)
        rows.append(row)
    return rows


def _compile_seconds(bench: Bench, request: Any, on: Callable[[], None], off: Callable[[], None]) -> float:
    """The first compiled run's time minus an eager run's: what a user waits once after a model load."""
    off()
    synchronize(bench.device)
    started = time.perf_counter()
    bench.engine.img2img(request)
    eager = time.perf_counter() - started
    on()
    started = time.perf_counter()
    bench.engine.img2img(request)
    synchronize(bench.device)
    return time.perf_counter() - started - eager
