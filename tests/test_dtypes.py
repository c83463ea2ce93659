"""The GPU's dtype paths, run on the CPU: every mode of the engine under fp32, fp16, and fp16 UNet + fp32 VAE
(--no-half-vae), with 4- and 9-channel models. fp16 on a GPU is what users run; these are the same code paths.

Each case checks that the run finishes, that the weights really ran in the dtypes named, that the pictures
are finite and keep what they must keep, and that fp16 computes the same picture as fp32 up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from ldm_export import write_demo_variant
from pictures import blocky_picture, box_mask

from pipelines.device_policy import DevicePolicy, MemoryMode
from pipelines.fields import InpaintArea, MaskedContent
from pipelines.generation.inpaint_prep import prepare_request_mask
from pipelines.generation.requests import Img2ImgRequest
from pipelines.images.image_ops import flatten_onto_white
from scripts import outpainting_mk2, outpainting_poor_man, sd_upscale

CPU = torch.device("cpu")
F16, F32 = torch.float16, torch.float32
POLICIES = {
    "fp32": DevicePolicy(CPU, F32, F32),
    "fp16": DevicePolicy(CPU, F16, F16),
    "fp16-unet+fp32-vae": DevicePolicy(CPU, F16, F32),
}


def _nine_channel_data(root):
    write_demo_variant([root / "models" / "Stable-diffusion" / "tiny-inpainting.safetensors"], in_channels=9)
    return root


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(policy name, channels) -> engine; built once per module (loading is the slow part)."""
    nine = _nine_channel_data(tmp_path_factory.mktemp("nine"))
    cache = {}

    def get(policy: str, channels: int = 4):
        key = (policy, channels)
        if key not in cache:
            data = nine if channels == 9 else tmp_path_factory.mktemp("four")
            cache[key] = make_demo_engine(data, preview_every=1, policy=POLICIES[policy])
        return cache[key]

    return get


def picture(w=64, h=64):
    return blocky_picture(w, h)


def request(**kw):
    image = kw.pop("init_image", picture())
    base = dict(init_image=image, prompt="a red fox", width=image.width, height=image.height, steps=5, seed=11,
                denoising_strength=0.8, save_images=False, sampler_name="Euler a")
    base.update(kw)
    return Img2ImgRequest(**base)


def inpaint(**kw):
    return request(mask=box_mask((64, 64), (16, 16, 47, 47)), mask_blur_x=0, mask_blur_y=0, **kw)


CASES = {
    "img2img": lambda: request(),
    "img2img batch 2": lambda: request(batch_size=2),
    "latent upscale": lambda: request(resize_mode=3, init_image=picture(32, 32), width=64, height=64),
    "inpaint": lambda: inpaint(),
    "inpaint only masked": lambda: inpaint(inpaint_area=InpaintArea.ONLY_MASKED, only_masked_padding=8),
    "inpaint latent noise": lambda: inpaint(masked_content=MaskedContent.LATENT_NOISE),
    "soft inpainting": lambda: request(mask=box_mask((64, 64), (16, 16, 47, 47)), soft_inpainting=True,
                                       mask_blur_x=6, mask_blur_y=6),
    "variation seed": lambda: request(subseed=5, subseed_strength=0.4),
}
SCRIPTS = {
    "poor man's outpainting": (outpainting_poor_man, lambda: outpainting_poor_man.PoorManOutpaintingParams(
        pixels=16, mask_blur=4, directions=("right",))),
    "outpainting mk2": (outpainting_mk2, lambda: outpainting_mk2.OutpaintingMk2Params(
        pixels=16, mask_blur=4, directions=("down",))),
    "sd upscale": (sd_upscale, lambda: sd_upscale.SdUpscaleParams(16, "Lanczos", 2.0)),
}


def run_case(engine, case: str):
    if case in SCRIPTS:
        module, params = SCRIPTS[case]
        req = request(denoising_strength=0.6)
        return req, module.run(engine, req, params())
    req = CASES[case]()
    return req, engine.img2img(req)


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def assert_sane(req, result):
    assert result.images and not result.interrupted
    for image in result.images:
        array = pixels(image)
        # NaN latents decode to a flat black picture: a real decode of this noise-like model never is.
        assert array.std() > 1
    if req.mask is not None:
        outside = np.asarray(prepare_request_mask(req)) == 0  # after the blur
        original = pixels(flatten_onto_white(req.init_image))
        for image in result.images:
            assert (pixels(image)[outside] == original[outside]).all()


def assert_ran_in(engine, policy: str):
    components = engine.models.current.components
    expected = POLICIES[policy]
    assert components.unet.dtype == expected.dtype and components.text_encoder.dtype == expected.dtype
    assert components.vae.dtype == expected.vae_dtype


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("case", list(CASES) + list(SCRIPTS))
def test_four_channel_model(engines, policy, case):
    engine = engines(policy)
    req, result = run_case(engine, case)
    assert_sane(req, result)
    assert_ran_in(engine, policy)
    if policy != "fp32":  # the same picture as fp32, up to half-precision rounding
        _, reference = run_case(engines("fp32"), case)
        for image, ref in zip(result.images, reference.images):
            assert np.abs(pixels(image) - pixels(ref)).mean() < 6


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("case", ["img2img", "img2img batch 2", "inpaint", "inpaint only masked", "soft inpainting",
                                  "inpaint latent noise", "poor man's outpainting"])
def test_nine_channel_model(engines, policy, case):
    engine = engines(policy, channels=9)
    assert engine.models.current.components.is_inpainting
    req, result = run_case(engine, case)
    assert_sane(req, result)
    assert_ran_in(engine, policy)
    if policy != "fp32":
        _, reference = run_case(engines("fp32", channels=9), case)
        for image, ref in zip(result.images, reference.images):
            assert np.abs(pixels(image) - pixels(ref)).mean() < 6


# On a CUDA GPU (marked `gpu`: outside the default run; ./test.sh adds them where CUDA is available) ---------
CUDA_POLICIES = {
    "cuda fp16": lambda: DevicePolicy(torch.device("cuda"), F16, F16),
    "cuda fp16-unet+fp32-vae": lambda: DevicePolicy(torch.device("cuda"), F16, F32),
    "cuda fp16 medvram": lambda: DevicePolicy(torch.device("cuda"), F16, F16, MemoryMode.MEDVRAM),
    "cuda fp16 lowvram": lambda: DevicePolicy(torch.device("cuda"), F16, F16, MemoryMode.LOWVRAM),
}


@pytest.fixture(scope="module")
def cuda_engines(tmp_path_factory):
    nine = _nine_channel_data(tmp_path_factory.mktemp("cuda-nine"))
    cache = {}

    def get(policy: str, channels: int = 4):
        if (policy, channels) not in cache:
            data = nine if channels == 9 else tmp_path_factory.mktemp("cuda-four")
            cache[policy, channels] = make_demo_engine(data, preview_every=1, policy=CUDA_POLICIES[policy]())
        return cache[policy, channels]

    return get


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("policy", list(CUDA_POLICIES))
@pytest.mark.parametrize("channels,case", [(4, c) for c in list(CASES) + list(SCRIPTS)]
                         + [(9, c) for c in ("img2img", "inpaint", "soft inpainting", "poor man's outpainting")])
def test_on_cuda(cuda_engines, engines, policy, channels, case):
    engine = cuda_engines(policy, channels)
    req, result = run_case(engine, case)
    assert_sane(req, result)
    # The same picture as on the CPU in fp32, up to fp16 rounding and the GPU's own kernels.
    _, reference = run_case(engines("fp32", channels), case)
    for image, ref in zip(result.images, reference.images):
        assert np.abs(pixels(image) - pixels(ref)).mean() < 8
