"""Launch flags (the ones A1111 users know) -> Settings, decided once at start-up."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    listen: bool = False
    port: int | None = None
    share: bool = False
    api: bool = False
    nowebui: bool = False
    api_auth: str | None = None
    gradio_auth: str | None = None
    max_upload_mb: float = 50.0  # Gradio's max_file_size for uploads to the web UI
    ckpt: Path | None = None
    ckpt_dir: Path | None = None
    vae_path: Path | None = None
    vae_dir: Path | None = None
    lora_dir: Path | None = None
    embeddings_dir: Path | None = None
    data_dir: Path = PROJECT_ROOT
    outdir: Path | None = None
    device_id: int | None = None
    use_cpu: bool = False
    no_half: bool = False
    no_half_vae: bool = False
    precision: str = "autocast"
    medvram: bool = False
    lowvram: bool = False
    interrogate_keep_models_in_memory: bool = False
    gradio_img2img_tool: str = "editor"
    skip_torch_cuda_test: bool = False
    opt_sdp_attention: bool = False
    xformers: bool = False
    # Opt-in speed options (device_policy.SpeedOptions; measured by bench/suite.py)
    opt_channelslast: bool = False
    compile_unet: bool = False
    fuse_qkv: bool = False
    # CORS (A1111's flags): origins allowed to call the server from a page of another origin
    cors_allow_origins: str | None = None
    cors_allow_origins_regex: str | None = None
    api_server_stop: bool = False  # POST /sdapi/v1/server-stop, -restart, -kill
    # Request limits (pipelines/limits.py; None: its default)
    api_max_body_mb: float | None = None
    max_image_pixels: int | None = None
    max_request_pixels: int | None = None
    max_output_pixels: int | None = None
    max_job_pixels: int | None = None

    @property
    def server_name(self) -> str:
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def server_port(self) -> int:
        if self.port is not None:
            return self.port
        return 7861 if self.nowebui else 7860

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def checkpoint_dirs(self) -> list[Path]:
        dirs = [self.models_dir / "Stable-diffusion"]
        if self.ckpt_dir is not None and self.ckpt_dir not in dirs:
            dirs.append(self.ckpt_dir)
        return dirs

    @property
    def vae_dirs(self) -> list[Path]:
        dirs = [self.models_dir / "VAE"]
        if self.vae_dir is not None:
            dirs.append(self.vae_dir)
        return dirs

    @property
    def lora_dirs(self) -> list[Path]:
        """models/Lora (A1111's default), or --lora-dir instead (as A1111's flag replaces it)."""
        return [self.lora_dir if self.lora_dir is not None else self.models_dir / "Lora"]

    @property
    def embeddings_dirs(self) -> list[Path]:
        """<data-dir>/embeddings (A1111's default), or --embeddings-dir instead."""
        return [self.embeddings_dir if self.embeddings_dir is not None else self.data_dir / "embeddings"]

    @property
    def styles_path(self) -> Path:
        return self.data_dir / "styles.csv"

    @property
    def outputs_dir(self) -> Path:
        return self.outdir if self.outdir is not None else self.data_dir / "outputs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


class _Parser(argparse.ArgumentParser):
    """argparse that names every valid flag when it meets an unknown one."""

    def error(self, message: str) -> None:  # type: ignore[override]
        valid = sorted(a for action in self._actions for a in action.option_strings if a.startswith("--"))
        self.exit(2, f"{self.prog}: error: {message}\nValid flags: {' '.join(valid)}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="app.py", description="Stable Diffusion img2img studio (A1111-compatible flags)")
    p.add_argument("--listen", action="store_true", help="bind 0.0.0.0 instead of 127.0.0.1")
    p.add_argument("--port", type=int, help="port (default 7860; 7861 with --nowebui)")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (needs internet)")
    p.add_argument("--api", action="store_true", help="serve the /sdapi/v1 HTTP API beside the UI")
    p.add_argument("--nowebui", action="store_true", help="serve the API alone")
    p.add_argument("--api-auth", metavar="USER:PASS[,USER:PASS]", help="HTTP Basic credentials for the API")
    p.add_argument("--gradio-auth", metavar="USER:PASS[,USER:PASS]", help="log-in credentials for the web UI")
    p.add_argument("--max-upload-mb", type=float, default=50.0, metavar="MB",
                   help="largest file the web UI accepts as an upload (default 50)")
    p.add_argument("--ckpt", type=Path, help="checkpoint to load at start-up")
    p.add_argument("--ckpt-dir", type=Path, help="an extra folder to search for checkpoints")
    p.add_argument("--vae-path", type=Path, help="a VAE file to use instead of each checkpoint's own")
    p.add_argument("--vae-dir", type=Path, help="an extra folder to search for VAE files")
    p.add_argument("--lora-dir", type=Path, help="the folder of LoRA files (default <data-dir>/models/Lora)")
    p.add_argument("--embeddings-dir", type=Path,
                   help="the folder of textual-inversion embeddings (default <data-dir>/embeddings)")
    p.add_argument("--data-dir", type=Path, default=PROJECT_ROOT, help="base folder for models/, outputs/, cache/")
    p.add_argument("--outdir", type=Path, help="where images are saved (default <data-dir>/outputs)")
    p.add_argument("--device-id", type=int, help="CUDA device index")
    p.add_argument("--use-cpu", nargs="*", metavar="MODULE",
                   help="run on the CPU (A1111 takes module names; any value means all)")
    p.add_argument("--no-half", action="store_true", help="run the model in fp32")
    p.add_argument("--no-half-vae", action="store_true", help="run the VAE in fp32")
    p.add_argument("--precision", choices=["full", "half", "autocast"], default="autocast",
                   help="full = fp32, half/autocast = fp16 on GPU; half on a CPU with bf16 units = bf16")
    p.add_argument("--medvram", action="store_true", help="keep only the active model on the GPU (model CPU offload)")
    p.add_argument("--lowvram", action="store_true",
                   help="stream weights to the GPU layer by layer (sequential CPU offload)")
    p.add_argument("--interrogate-keep-models-in-memory", action="store_true",
                   help="keep the BLIP and CLIP models on the GPU between interrogations (default: back "
                        "to RAM after each; A1111's interrogate_keep_models_in_memory)")
    p.add_argument("--gradio-img2img-tool", choices=["editor", "color-sketch"], default="editor",
                   help="color-sketch: a colour brush on the img2img upload")
    p.add_argument("--skip-torch-cuda-test", action="store_true", help="accepted for A1111 compatibility")
    p.add_argument("--opt-sdp-attention", action="store_true", help="accepted: PyTorch SDPA attention is always used")
    p.add_argument("--xformers", action="store_true", help="accepted: PyTorch SDPA attention is used instead")
    p.add_argument("--opt-channelslast", action="store_true", help="channels-last memory format for the UNet")
    p.add_argument("--compile-unet", action="store_true",
                   help="torch.compile the UNet (the first generation after a model load waits for the compile)")
    p.add_argument("--fuse-qkv", action="store_true",
                   help="fuse the UNet's attention q/k/v projections into one matmul (not with LoRA)")
    p.add_argument("--cors-allow-origins", metavar="ORIGINS", type=_origins,
                   help="allowed CORS origin(s), comma-separated, e.g. http://localhost:8080 (default: none)")
    p.add_argument("--cors-allow-origins-regex", metavar="REGEX", type=_regex,
                   help="allowed CORS origins as a regular expression matching the whole origin")
    p.add_argument("--api-server-stop", action="store_true",
                   help="enable POST /sdapi/v1/server-stop, server-restart and server-kill")
    _add_limit_flags(p)
    return p


def _origins(text: str) -> str:
    """--cors-allow-origins: each entry an origin as browsers send it (scheme://host[:port]), or * / null."""
    for origin in (o.strip() for o in text.split(",")):
        if origin and origin not in ("*", "null") and not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+", origin):
            raise argparse.ArgumentTypeError(f"{origin!r} is not an origin such as http://localhost:8080 "
                                             f"(scheme://host[:port], no path)")
    return text


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {exc}") from None
    return text


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    """The request limits (pipelines/limits.py declares them and their defaults)."""
    from pipelines.limits import MIB, Limits

    def positive(cast: type) -> Any:
        def parse(text: str) -> Any:
            value = cast(text)
            if value <= 0:
                raise argparse.ArgumentTypeError(f"{text} is not a positive number")
            return value
        return parse

    limits = Limits()
    p.add_argument("--api-max-body-mb", type=positive(float), metavar="MB",
                   help=f"largest HTTP API request body (default {limits.max_body_bytes // MIB}; answered with 413)")
    for flag, name, what in (("--max-image-pixels", "max_image_pixels", "one input image, by its declared size"),
                             ("--max-request-pixels", "max_request_pixels", "all input images of one request"),
                             ("--max-output-pixels", "max_output_pixels", "one output image (SD upscale)"),
                             ("--max-job-pixels", "max_job_pixels", "all images one request produces")):
        p.add_argument(flag, type=positive(int), metavar="PIXELS",
                       help=f"most pixels in {what} (default {getattr(limits, name)})")


def parse_flags(argv: list[str] | None = None) -> Settings:
    """Parse launch flags; an unknown flag exits with status 2 and the list of valid flags."""
    ns = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    values = vars(ns)
    values["use_cpu"] = ns.use_cpu is not None  # `--use-cpu` or `--use-cpu all`
    data_dir = values["data_dir"].resolve()
    values["data_dir"] = data_dir
    return Settings(**values)


# The folders users drop weights into; created under --data-dir at start-up so they can see where models go.
MODEL_FOLDERS = ("Stable-diffusion", "VAE", "ESRGAN", "BLIP", "CLIP", "Lora")


def create_model_folders(settings: Settings) -> None:
    for name in MODEL_FOLDERS:
        (settings.models_dir / name).mkdir(parents=True, exist_ok=True)


def ui_credentials(settings: Settings) -> list[tuple[str, str]] | None:
    """Who may log in to the web UI: --gradio-auth, else --api-auth (either flag protects the whole server)."""
    return parse_credentials(settings.gradio_auth, "--gradio-auth") or parse_credentials(settings.api_auth,
                                                                                         "--api-auth")


def api_credentials(settings: Settings) -> list[tuple[str, str]] | None:
    """Who may call the HTTP API (HTTP Basic): --api-auth, else --gradio-auth."""
    return parse_credentials(settings.api_auth, "--api-auth") or parse_credentials(settings.gradio_auth,
                                                                                   "--gradio-auth")


def parse_credentials(text: str | None, flag: str) -> list[tuple[str, str]] | None:
    """--gradio-auth / --api-auth "user:pass,user2:pass2" -> [("user", "pass"), ("user2", "pass2")].

    None when unset or blank. Each entry splits at its first ':' (a password may contain ':', not ','; A1111's
    format has no escape). A malformed entry raises ValueError naming the flag and the entry, so a typo stops
    start-up instead of leaving the UI or API open.
    """
    if text is None or not text.strip():
        return None
    credentials = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise ValueError(f"{flag}: {entry!r} is not user:password")
        credentials.append((user, password))
    return credentials or None
