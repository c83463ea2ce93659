"""The engine on the embedded demo model in a fresh data dir: what most engine-level tests run against."""

from __future__ import annotations

from pathlib import Path

from pipelines.device_policy import DevicePolicy
from pipelines.generation.engine import Engine
from pipelines.launch_flags import parse_flags
from pipelines.models.model_manager import ModelManager


def make_demo_engine(data_dir: Path, preview_every: int = 5, policy: DevicePolicy | None = None) -> Engine:
    """Loads whatever models/Stable-diffusion/ under data_dir holds (nothing: the demo model). `policy`
    overrides the launch flags' device policy, e.g. fp16 on the CPU to run the GPU's dtype paths."""
    settings = parse_flags(["--data-dir", str(data_dir)])
    models = ModelManager(settings, policy or DevicePolicy.from_settings(settings))
    models.load(None)
    return Engine(models, settings.outputs_dir, preview_every=preview_every)


def make_nine_channel_engine(data_dir: Path, preview_every: int = 5, policy: DevicePolicy | None = None) -> Engine:
    """The demo model with a 9-channel (sd-v1-5-inpainting layout) UNet, loaded from an LDM-layout file."""
    from ldm_export import write_demo_variant  # noqa: PLC0415 - tests/ is on sys.path for every test

    write_demo_variant([data_dir / "models" / "Stable-diffusion" / "tiny-inpainting.safetensors"], in_channels=9)
    return make_demo_engine(data_dir, preview_every, policy)
