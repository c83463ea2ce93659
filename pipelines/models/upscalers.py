"""Upscalers: A1111's None / Lanczos / Nearest plus model files (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT,
SCUNet) run through spandrel, which detects the architecture from the weights.

Safety: weights are read by this module, never by spandrel's loader: .safetensors with safetensors, .pth/.pt
with `torch.load(weights_only=True)`, which only rebuilds tensors and plain containers. A pickle that wants
to run code is refused with an error naming the file; nothing in it is executed.

spandrel's package import pulls in torchvision for two architectures we never use (LaMa inpainting and
RestoreFormer face restoration). torchvision is not importable beside this project's torch, so when the
plain import fails we import spandrel with a throw-away stand-in for the three torchvision names those two
modules read, then remove the stand-in from sys.modules so nothing else ever sees it (see _import_spandrel).
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import pickle
import re
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipelines.fields import RequestError
from pipelines.images.tiles import tile_starts

if TYPE_CHECKING:  # torch (under the policy) is imported only when a model is used
    from pipelines.device_policy import DevicePolicy

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST

BUILTIN_UPSCALERS = ("None", "Lanczos", "Nearest")
# Folders under models/ that A1111 scans for upscaler weights, in its list order.
MODEL_DIRS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "ScuNET")
MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors")
DEFAULT_SCALE = 4  # A1111's UpscalerData default: what a model whose name says nothing is assumed to do
MAX_MODEL_PASSES = 3  # A1111 Upscaler.upscale: run a model at most three times to reach the target size

# A1111's display names for the official files it knows (everything else is named after its file).
KNOWN_NAMES = {
    "RealESRGAN_x4plus": "R-ESRGAN 4x+",
    "RealESRGAN_x4plus_anime_6B": "R-ESRGAN 4x+ Anime6B",
    "RealESRGAN_x2plus": "R-ESRGAN 2x+",
    "realesr-general-x4v3": "R-ESRGAN General 4xV3",
    "realesr-general-wdn-x4v3": "R-ESRGAN General WDN 4xV3",
    "realesr-animevideov3": "R-ESRGAN AnimeVideo",
    "DAT_x2": "DAT x2",
    "DAT_x3": "DAT x3",
    "DAT_x4": "DAT x4",
    "SwinIR_4x": "SwinIR 4x",
    "ScuNET": "ScuNET GAN",
    "ScuNET_PSNR": "ScuNET PSNR",
}


@dataclass(frozen=True)
class UpscalerInfo:
    name: str
    path: Path | None  # None for the built-in resamplers
    scale: int  # the model's native factor as its file name tells (DEFAULT_SCALE when it does not)

    @property
    def is_model(self) -> bool:
        return self.path is not None


# 1. Discovery -----------------------------------------------------------------------------------------
_SCALE_IN_NAME = re.compile(r"(?:^|[^0-9a-z])(?:x([1-8])|([1-8])x)(?:$|[^0-9])", re.IGNORECASE)


def scale_from_name(stem: str) -> int:
    """4x-UltraSharp, RealESRGAN_x4plus, DAT_x2, SwinIR_4x... -> 4, 4, 2, 4; nothing recognisable -> 4."""
    match = _SCALE_IN_NAME.search(stem)
    if not match:
        return DEFAULT_SCALE
    return int(match.group(1) or match.group(2))


def list_upscalers(models_dir: Path | str | None) -> list[UpscalerInfo]:
    """None, Lanczos, Nearest, then every weights file in models/<ESRGAN|RealESRGAN|SwinIR|DAT|HAT|ScuNET>
    (sorted by name within a folder; no models_dir: the built-ins only). A name taken twice gets its folder
    appended: "foo (SwinIR)"."""
    found: list[UpscalerInfo] = [UpscalerInfo(name, None, DEFAULT_SCALE) for name in BUILTIN_UPSCALERS]
    taken = {name.lower() for name in BUILTIN_UPSCALERS}
    for folder in MODEL_DIRS if models_dir is not None else ():
        directory = Path(models_dir) / folder
        if not directory.is_dir():
            continue
        weights = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS]
        files = sorted(weights, key=lambda p: p.name.lower())
        for path in files:
            name = KNOWN_NAMES.get(path.stem, path.stem)
            if name.lower() in taken:
                name = f"{name} ({folder})"
            if name.lower() in taken:  # same stem, two extensions in one folder
                name = f"{path.stem}{path.suffix} ({folder})"
            taken.add(name.lower())
            found.append(UpscalerInfo(name, path, scale_from_name(path.stem)))
    return found


def resolve_upscaler(choice: str | int, models_dir: Path | str | None) -> UpscalerInfo:
    """An upscaler by name (case-insensitive, as the A1111 API accepts it) or by index into list_upscalers."""
    available = list_upscalers(models_dir)
    known = ", ".join(u.name for u in available)
    if isinstance(choice, bool) or not isinstance(choice, (str, int)):
        raise RequestError("upscaler", f"{choice!r} is neither an upscaler name nor an index; known: {known}")
    if isinstance(choice, int):
        if not 0 <= choice < len(available):
            raise RequestError("upscaler",
                               f"index {choice} is outside 0..{len(available) - 1}; known: {known}")
        return available[choice]
    for info in available:
        if info.name.lower() == choice.strip().lower():
            return info
    raise RequestError("upscaler", f"unknown upscaler {choice!r}; known: {known}")


# 2. Safe weights loading -------------------------------------------------------------------------------
def load_state_dict(path: Path) -> dict[str, Any]:
    """Read a weights file without executing anything in it; refuse files that would need to."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parse error means an unusable file
            raise RequestError("upscaler", f"{path.name}: not a readable .safetensors file ({exc})") from exc
    if suffix not in (".pth", ".pt", ".ckpt"):
        raise RequestError("upscaler", f"{path.name}: unsupported weights file type {suffix!r}")
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as exc:
        raise RequestError(
            "upscaler",
            f"{path.name}: refused to load: the file is not plain weights (it asks to run or import code, "
            f"or is a TorchScript archive), and pickled code is never executed here{_culprit(exc)}. "
            f"Convert it to .safetensors from a trusted copy.",
        ) from exc
    if not isinstance(state, dict):
        raise RequestError("upscaler", f"{path.name}: expected a state dict, found {type(state).__name__}")
    return state


def _culprit(exc: Exception) -> str:
    """The global a refused pickle asked for, e.g. " (it references posix.system)", when torch names it."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f" (it references {match.group(1)})" if match else ""


_SPANDREL_LOCK = threading.Lock()
_TV_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this architecture needs torchvision, which is not installed")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    root, transforms, functional = (types.ModuleType(name) for name in _TV_NAMES)
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    return dict(zip(_TV_NAMES, (root, transforms, functional)))


def _import_spandrel() -> types.ModuleType:
    """`import spandrel`, with a torchvision stand-in present only for the duration of the import."""
    with _SPANDREL_LOCK:
        if "spandrel" in sys.modules and hasattr(sys.modules["spandrel"], "ModelLoader"):
            return sys.modules["spandrel"]
        try:
            return importlib.import_module("spandrel")
        except Exception as exc:  # noqa: BLE001 - a missing or broken torchvision; others re-raise
            if "torchvision" not in repr(exc) and not isinstance(exc, ImportError):
                raise
        for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
            del sys.modules[name]
        saved = {name: sys.modules.pop(name) for name in _TV_NAMES if name in sys.modules}
        sys.modules.update(_torchvision_stand_in())
        try:
            return importlib.import_module("spandrel")
        finally:
            for name in _TV_NAMES:
                sys.modules.pop(name, None)
            sys.modules.update(saved)


# 3. Loaded models (owned by the ModelManager, placed by the device policy) ---------------------------------
class UpscalerModels:
    """Loaded upscaler models: keyed by file (and its mtime/size, so a replaced file reloads); keeps the
    `max_loaded` most recently used. Each model is read onto the CPU, cast to the policy's dtype, and moved
    by the policy around each run (kept on the device in normal mode, back to the CPU under --medvram /
    --lowvram). One instance per ModelManager, never module-level, so a checkpoint switch can free it."""

    def __init__(self, policy: DevicePolicy | None = None, max_loaded: int = 1):
        import torch

        from pipelines.device_policy import DevicePolicy

        # no policy (tests, tools): the CPU in fp32
        self.policy = policy or DevicePolicy(torch.device("cpu"), torch.float32, torch.float32)
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times weights were read from disk (tests check the cache with it)

    def get(self, path: Path) -> Any:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            while self._loaded and len(self._loaded) >= self.max_loaded:
                self._loaded.popitem(last=False)  # evict before reading: peak memory stays max_loaded models
            model = self._loaded[key] = self._load(Path(path))
            return model

    def loaded(self) -> list[Any]:
        with self._lock:
            return list(self._loaded.values())

    def clear(self) -> None:
        """Drop every loaded model (a checkpoint switch calls this); the caller empties the device cache."""
        with self._lock:
            self._loaded.clear()

    @contextlib.contextmanager
    def in_use(self, path: Path) -> Iterator[Any]:
        """The model for `path` on the device for the duration of the block, then where the policy says."""
        model = self.get(path)
        self.policy.place_for_use(model)
        try:
            yield model
        finally:
            self.policy.release_after_use(model)

    def _load(self, path: Path) -> Any:
        import torch

        spandrel = _import_spandrel()
        state = load_state_dict(path)
        self.loads += 1
        try:
            descriptor = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
        except spandrel.UnsupportedModelError as exc:
            raise RequestError("upscaler", f"{path.name}: not a model architecture spandrel knows") from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3 \
                or descriptor.output_channels != 3:
            raise RequestError("upscaler", f"{path.name}: a {descriptor.architecture.name} model is not an "
                                           f"RGB image upscaler")
        dtype = self.policy.dtype
        if dtype == torch.float16 and not descriptor.supports_half \
                or dtype == torch.bfloat16 and not descriptor.supports_bfloat16:
            dtype = torch.float32
        return descriptor.to(dtype=dtype).eval()  # on the CPU until a run places it


# 4. Upscaling -----------------------------------------------------------------------------------------------
def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """scale x the size, floored to a multiple of 8 as A1111's Upscaler.upscale does (at least 8)."""
    return max(8, int(width * scale // 8 * 8)), max(8, int(height * scale // 8 * 8))


def upscale(image: Image.Image, upscaler: str | int | UpscalerInfo, scale: float,
            models_dir: Path | str | None, *, models: UpscalerModels | None = None,
            tile: int = 256, tile_overlap: int = 16) -> Image.Image:
    """Upscale image by scale with the named upscaler (A1111 `Upscaler.upscale`).

    "None" returns the image unchanged (A1111's UpscalerNone: no resampling at all). Lanczos and Nearest
    resize by scale; a model runs up to three passes until the image covers the target (one pass at scale 1,
    as A1111: never 3 passes of a 4x model for nothing). The target is scale x the size floored to a
    multiple of 8, reached at the end with Lanczos as A1111 does. Models run in tiles of `tile` input pixels
    (0: whole image at once) so large images keep memory bounded. A model upscaler needs `models`, the
    owner of loaded upscaler models (ModelManager.upscalers): there is no module-level cache to fall back on.
    """
    info = upscaler if isinstance(upscaler, UpscalerInfo) else resolve_upscaler(upscaler, models_dir)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < scale <= 16):
        raise RequestError("scale", f"{scale!r} is not a number in (0, 16]")
    image = image.convert("RGB")
    if info.name == "None":
        return image.copy()
    dest = target_size(image.width, image.height, scale)
    if not info.is_model:  # A1111's UpscalerLanczos/UpscalerNearest: scale x, then the final resize below
        resample = LANCZOS if info.name == "Lanczos" else NEAREST
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), resample)
        return image if image.size == dest else image.resize(dest, resample=LANCZOS)
    if models is None:
        raise ValueError(f"upscaling with {info.name!r} needs the UpscalerModels that own the loaded models "
                         f"(ModelManager.upscalers)")
    with models.in_use(info.path) as model:
        for done in range(MAX_MODEL_PASSES):
            if image.width >= dest[0] and image.height >= dest[1] and (done > 0 or scale != 1):
                break
            before = image.size
            image = run_model(model, image, tile=tile, overlap=tile_overlap)
            if image.size == before:  # a 1x model: one pass is all it does
                break
    return image if image.size == dest else image.resize(dest, resample=LANCZOS)


def run_model(model: Any, image: Image.Image, *, tile: int = 256, overlap: int = 16) -> Image.Image:
    """One pass of a spandrel image model over an RGB image, tile by tile, overlaps averaged."""
    import torch

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    param = next(model.model.parameters())
    pixels = pixels.to(device=param.device, dtype=param.dtype)
    with torch.inference_mode():
        if tile <= 0 or (image.width <= tile and image.height <= tile):
            out = model(pixels)
        else:
            out = _run_tiled(model, pixels, tile, min(overlap, tile // 2))
        out = out[0].float().clamp(0, 1).permute(1, 2, 0).mul(255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(out, "RGB")


def _run_tiled(model: Any, pixels: Any, tile: int, overlap: int) -> Any:
    import torch

    _, _, height, width = pixels.shape
    scale = model.scale
    out = torch.zeros((1, 3, height * scale, width * scale), dtype=torch.float32, device=pixels.device)
    weight = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32, device=pixels.device)
    tile_w, tile_h = min(tile, width), min(tile, height)
    for y in tile_starts(height, tile_h, overlap):
        for x in tile_starts(width, tile_w, overlap):
            piece = model(pixels[:, :, y:y + tile_h, x:x + tile_w]).float()
            region = (slice(None), slice(None), slice(y * scale, (y + tile_h) * scale),
                      slice(x * scale, (x + tile_w) * scale))
            out[region] += piece
            weight[region] += 1
    return out / weight
