"""SD 2.x: tiny models written in the original SD 2 single-file layout (tests/sd2_export.py) go through the real
loading path - family detection, OpenCLIP conversion, v-prediction detection by every route A1111 and the v-pred
fine-tunes use - and then through the engine: img2img, inpaint (4 and 9 channels), every sampler with
v-prediction, A1111's SD 2 prompt padding and clip skip, the dtype matrix, and HTTP."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture, box_mask
from sd2_export import TOWER, a1111_yaml, build_tiny_sd2, sd2_state_dict, write_sd2_checkpoint
from test_dtypes import POLICIES, assert_ran_in, assert_sane, pixels, run_case

from api import build_api_app
from api.testing import LiveServer
from pipelines.generation.engine import Engine
from pipelines.generation.prompt_chunks import chunk_prompt, encode_chunked
from pipelines.generation.requests import Img2ImgRequest
from pipelines.generation.samplers import SAMPLER_NAMES
from pipelines.generation.schedules import DiscreteSigmas
from pipelines.models import sd2_loader
from pipelines.models.checkpoint_loader import CheckpointError, load_checkpoint
from pipelines.models.families import ModelFamily
from pipelines.models.parameterization import A1111_TERMINAL_ALPHA_BAR

CPU = torch.device("cpu")


def _models_dir(root):
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _request(**kw):
    image = kw.pop("init_image", blocky_picture(64, 64))
    base = dict(init_image=image, prompt="a red fox", width=64, height=64, steps=4, seed=5, denoising_strength=0.7,
                save_images=False, sampler_name="Euler a")
    return Img2ImgRequest(**{**base, **kw})


# -- loading ------------------------------------------------------------------------------------------------


def test_single_file_loads_offline_as_sd2_and_converts_back_to_the_same_tensors(tmp_path):
    tiny = build_tiny_sd2()
    path = write_sd2_checkpoint(tiny, tmp_path / "sd21-tiny.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.family is ModelFamily.SD2 and not loaded.is_inpainting
    # OpenCLIP's tokenizer: the CLIP BPE with "!" (id 0) as padding
    assert loaded.tokenizer.pad_token == "!" and loaded.tokenizer.pad_token_id == 0
    assert loaded.tokenizer.eos_token_id == 49407
    # the file's extra (last) OpenCLIP block is dropped: SD 2 reads the penultimate layer
    assert loaded.text_encoder.config.num_hidden_layers == 2
    assert sd2_loader._resblock_count(sd2_state_dict(tiny)) == 3
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded, part).state_dict(), getattr(tiny, part).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part
    again = sd2_state_dict(loaded)  # written back in the original layout: the file's tensors
    original = sd2_state_dict(tiny)
    skipped = (f"{TOWER}transformer.resblocks.2.", f"{TOWER}text_projection")  # random stand-ins, never read
    for key, tensor in original.items():
        if not key.startswith(skipped):
            assert torch.equal(again[key], tensor), key


def test_half_precision_ckpt_file_loads_in_the_asked_dtype(tmp_path):
    path = write_sd2_checkpoint(build_tiny_sd2(), tmp_path / "half.ckpt", half=True)
    loaded = load_checkpoint(path, torch.float16, vae_dtype=torch.float32)
    assert loaded.family is ModelFamily.SD2
    assert loaded.unet.dtype == torch.float16 and loaded.text_encoder.dtype == torch.float16
    assert loaded.vae.dtype == torch.float32


def test_yaml_layer_last_keeps_every_openclip_block(tmp_path):
    path = write_sd2_checkpoint(build_tiny_sd2(behaviour="eps"), tmp_path / "last.safetensors",
                                yaml_text=a1111_yaml("eps", layer="last"))
    assert load_checkpoint(path).text_encoder.config.num_hidden_layers == 3


def test_yaml_that_contradicts_the_weights_is_refused_by_name(tmp_path):
    path = write_sd2_checkpoint(build_tiny_sd2(), tmp_path / "wrong.safetensors", yaml_text=a1111_yaml("v", 9))
    with pytest.raises(CheckpointError, match=r"wrong\.yaml says unet_config in_channels: 9, but the weights have 4"):
        load_checkpoint(path)
    path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: x0\n")
    with pytest.raises(CheckpointError, match="parameterization 'x0'"):
        load_checkpoint(path)
    path.with_suffix(".yaml").write_text("model: [unclosed\n")
    with pytest.raises(CheckpointError, match="not a readable YAML config"):
        load_checkpoint(path)


def test_sd2_files_that_cannot_run_are_refused_by_name(tmp_path):
    from safetensors.torch import save_file  # noqa: PLC0415

    state = sd2_state_dict(build_tiny_sd2())
    no_vae = {k: v.contiguous() for k, v in state.items() if not k.startswith("first_stage_model.")}
    save_file(no_vae, str(tmp_path / "novae.safetensors"))
    with pytest.raises(CheckpointError, match="incomplete Stable Diffusion 2.x checkpoint: no VAE"):
        load_checkpoint(tmp_path / "novae.safetensors")
    depth = {**state, "depth_model.model.pretrained.act_postprocess3.0.project.0.bias": torch.zeros(4)}
    save_file({k: v.contiguous() for k, v in depth.items()}, str(tmp_path / "depth.safetensors"))
    with pytest.raises(CheckpointError, match=r"depth-to-image \(MiDaS\) model .* is not supported"):
        load_checkpoint(tmp_path / "depth.safetensors")


def test_diffusers_folder_of_sd2_loads_with_its_family(tmp_path):
    from diffusers import StableDiffusionPipeline  # noqa: PLC0415

    tiny = build_tiny_sd2()
    pipe = StableDiffusionPipeline(**tiny.as_dict(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "sd2-folder")
    loaded = load_checkpoint(tmp_path / "sd2-folder")
    assert loaded.family is ModelFamily.SD2 and loaded.tokenizer.pad_token_id == 0
    assert torch.equal(loaded.unet.conv_in.weight, tiny.unet.conv_in.weight)


# -- v-prediction: every route --------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour,expected", [("v", True), ("eps", False)])
def test_a1111_unet_test_tells_v_from_epsilon_on_the_weights(tmp_path, behaviour, expected):
    path = write_sd2_checkpoint(build_tiny_sd2(behaviour=behaviour), tmp_path / f"{behaviour}.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.v_prediction is expected
    assert loaded.scheduler.config.prediction_type == ("v_prediction" if expected else "epsilon")
    assert sd2_loader.unet_predicts_velocity(loaded.unet) is expected


def test_a1111_unet_test_runs_in_float32_and_leaves_a_half_unet_half():
    unet = build_tiny_sd2(behaviour="v").unet.half()
    assert sd2_loader.unet_predicts_velocity(unet) is True
    assert unet.dtype == torch.float16


@pytest.mark.parametrize("weights,yaml_says,expected", [("eps", "v", True), ("v", "eps", False)])
def test_yaml_beside_the_file_wins_over_the_weights(tmp_path, weights, yaml_says, expected):
    path = write_sd2_checkpoint(build_tiny_sd2(behaviour=weights), tmp_path / "m.safetensors",
                                yaml_text=a1111_yaml(yaml_says))
    assert load_checkpoint(path).v_prediction is expected


def test_v_pred_key_marks_a_v_model_and_ztsnr_gives_a1111s_zero_snr_schedule(tmp_path):
    path = write_sd2_checkpoint(build_tiny_sd2(behaviour="eps"), tmp_path / "vz.safetensors",
                                markers=("v_pred", "ztsnr"))
    loaded = load_checkpoint(path)
    assert loaded.v_prediction
    # A1111's rescale_zero_terminal_snr_abar: the last level just above zero, the first one unchanged
    levels = DiscreteSigmas.from_scheduler_config(loaded.scheduler.config)
    assert levels.alphas_cumprod[-1] == pytest.approx(A1111_TERMINAL_ALPHA_BAR, rel=1e-4)
    assert levels.alphas_cumprod[0] == pytest.approx(1 - 0.00085, rel=1e-5)
    assert levels.sigma_max == pytest.approx(((1 - A1111_TERMINAL_ALPHA_BAR) / A1111_TERMINAL_ALPHA_BAR) ** 0.5,
                                             rel=1e-3)
    assert float(loaded.scheduler.alphas_cumprod[-1]) == pytest.approx(A1111_TERMINAL_ALPHA_BAR, rel=1e-4)
    plain = load_checkpoint(write_sd2_checkpoint(build_tiny_sd2(behaviour="eps"), tmp_path / "p.safetensors"))
    assert DiscreteSigmas.from_scheduler_config(plain.scheduler.config).sigma_max == pytest.approx(14.6146, rel=1e-4)


def test_sd2_inpainting_is_epsilon_even_when_its_output_looks_like_v(tmp_path):
    path = write_sd2_checkpoint(build_tiny_sd2(in_channels=9, behaviour="v"), tmp_path / "inpaint.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.is_inpainting and not loaded.v_prediction


def test_v_models_get_the_published_attention_upcast():
    unet = build_tiny_sd2().unet
    sd2_loader._upcast_attention(unet)
    attentions = [m for m in unet.modules() if hasattr(m, "upcast_attention") and hasattr(m, "to_q")]
    assert attentions and all(m.upcast_attention for m in attentions) and unet.config.upcast_attention


# -- generation -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd2_engines(tmp_path_factory):
    """name -> engine over one tiny SD 2 file: "v" (768-v style), "eps", "inpaint" (9 channels), "ztsnr"."""
    specs = {"v": dict(behaviour=None, markers=("v_pred",)), "eps": dict(behaviour=None, markers=()),
             "inpaint": dict(behaviour=None, markers=(), in_channels=9),
             "ztsnr": dict(behaviour=None, markers=("v_pred", "ztsnr"))}
    cache = {}

    def get(name: str, policy: str = "fp32"):
        if (name, policy) not in cache:
            spec = dict(specs[name])
            root = tmp_path_factory.mktemp(f"sd2-{name}")
            tiny = build_tiny_sd2(in_channels=spec.pop("in_channels", 4), behaviour=spec["behaviour"])
            write_sd2_checkpoint(tiny, _models_dir(root) / f"sd2-{name}.safetensors", markers=spec["markers"])
            cache[name, policy] = make_demo_engine(root, preview_every=1, policy=POLICIES[policy])
        return cache[name, policy]

    return get


def test_img2img_and_inpaint_run_on_sd2(sd2_engines):
    engine = sd2_engines("v")
    assert engine.models.current.components.family is ModelFamily.SD2
    assert "(SD 2.x, v-prediction)" in engine.models.status_line()
    result = engine.img2img(_request())
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    assert "Model: sd2-v" in result.infotexts[0]
    again = engine.img2img(_request())
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))  # fixed seed, fixed picture
    masked = _request(mask=box_mask((64, 64), (16, 16, 47, 47)), mask_blur_x=0, mask_blur_y=0)
    assert_sane(masked, engine.img2img(masked))


def test_nine_channel_sd2_inpainting_runs(sd2_engines):
    engine = sd2_engines("inpaint")
    assert engine.models.current.components.is_inpainting
    req = _request(mask=box_mask((64, 64), (16, 16, 47, 47)), mask_blur_x=0, mask_blur_y=0)
    assert_sane(req, engine.img2img(req))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_with_v_prediction(sd2_engines, sampler):
    engine = sd2_engines("v")
    result = engine.img2img(_request(sampler_name=sampler, steps=2, denoising_strength=1.0))
    pipe = engine.models.pipeline("img2img")
    assert pipe.scheduler.config.prediction_type == "v_prediction"  # the sampler got the model's prediction
    assert np.isfinite(pixels(result.images[0])).all() and pixels(result.images[0]).std() > 1


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC"])
def test_zero_snr_model_samples_from_its_finite_top_level(sd2_engines, sampler):
    engine = sd2_engines("ztsnr")
    result = engine.img2img(_request(sampler_name=sampler, steps=2, denoising_strength=1.0))
    assert pixels(result.images[0]).std() > 1
    scheduler = engine.models.pipeline("img2img").scheduler  # the sampler's own levels are A1111's too
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(A1111_TERMINAL_ALPHA_BAR, rel=1e-4)
    if hasattr(scheduler, "sigmas"):
        assert torch.isfinite(torch.as_tensor(scheduler.sigmas)).all()


def test_sd2_prompt_chunks_pad_with_bang_after_the_end_token(sd2_engines):
    """A1111 (sd_hijack_clip.process_tokens): ids after a chunk's first EOS become id_pad, 0 for OpenCLIP."""
    components = sd2_engines("eps").models.current.components
    tokenizer, encoder = components.tokenizer, components.text_encoder
    chunked = chunk_prompt(tokenizer, "a red fox")
    got = encode_chunked(tokenizer, encoder, [chunked], CPU)
    ids = tokenizer("a red fox", add_special_tokens=False)["input_ids"]
    tokens = [49406] + ids + [49407] + [0] * (75 - len(ids))
    with torch.no_grad():
        expected = encoder(torch.tensor([tokens]))[0]
        eos_padded = encoder(torch.tensor([chunked.chunks[0].tokens]))[0]
    assert torch.equal(got, expected) and not torch.allclose(got, eos_padded)


def test_clip_skip_does_not_change_sd2_as_in_a1111_but_is_kept_in_the_infotext(sd2_engines):
    engine = sd2_engines("eps")
    one = engine.img2img(_request(clip_skip=1))
    two = engine.img2img(_request(clip_skip=2))
    assert np.array_equal(pixels(one.images[0]), pixels(two.images[0]))
    assert "Clip skip: 2" in two.infotexts[0]


def test_a_lora_or_vae_that_does_not_fit_names_the_loaded_family(tmp_path):
    from diffusers import AutoencoderKL  # noqa: PLC0415
    from ldm_export import write_vae  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    from pipelines.fields import RequestError  # noqa: PLC0415

    write_sd2_checkpoint(build_tiny_sd2(), _models_dir(tmp_path) / "sd2.safetensors")
    layer = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"  # SD 1.x's 768-wide text encoder
    (tmp_path / "models" / "Lora").mkdir(parents=True)
    save_file({f"{layer}.lora_down.weight": torch.zeros(4, 768), f"{layer}.lora_up.weight": torch.zeros(768, 4),
               f"{layer}.alpha": torch.tensor(4.0)}, str(tmp_path / "models" / "Lora" / "sd1style.safetensors"))
    flux_like = AutoencoderKL.from_config({**build_tiny_sd2().vae.config, "latent_channels": 16})
    write_vae(flux_like, tmp_path / "models" / "VAE" / "sixteen.safetensors")
    engine = make_demo_engine(tmp_path)
    with pytest.raises(RequestError, match=r"another model family.*\(the loaded model is SD 2\.x\)"):
        engine.img2img(_request(prompt="a fox <lora:sd1style:1>"))
    engine.models.refresh()
    with pytest.raises(CheckpointError, match="16 latent channels does not fit the loaded SD 2.x model"):
        engine.models.set_vae("sixteen.safetensors")
    assert engine.models.vae_choice == "Automatic"


# -- the dtype matrix on SD 2 (CPU fp16 runs the GPU's dtype paths) -----------------------------------------------


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("name,case", [("v", "img2img batch 2"), ("v", "soft inpainting"),
                                       ("inpaint", "inpaint only masked")])
def test_sd2_dtype_matrix(sd2_engines, policy, name, case):
    engine = sd2_engines(name, policy)
    req, result = run_case(engine, case)
    assert_sane(req, result)
    assert_ran_in(engine, policy)
    if policy != "fp32":
        _, reference = run_case(sd2_engines(name, "fp32"), case)
        for image, ref in zip(result.images, reference.images):
            assert np.abs(pixels(image) - pixels(ref)).mean() < 6


# -- HTTP ---------------------------------------------------------------------------------------------------------


def test_http_img2img_on_an_sd2_file_and_its_family_in_sd_models(sd2_engines):
    engine: Engine = sd2_engines("v")
    app = build_api_app(engine.models.settings, engine.models, engine)
    buffer = io.BytesIO()
    blocky_picture(64, 64).save(buffer, format="PNG")
    payload = {"init_images": [base64.b64encode(buffer.getvalue()).decode()], "prompt": "a red fox", "width": 64,
               "height": 64, "steps": 3, "seed": 5, "denoising_strength": 0.6, "sampler_name": "DPM++ 2M",
               "send_images": True, "save_images": False}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        r = client.post("/sdapi/v1/img2img", json=payload)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["images"]) == 1 and json.loads(body["info"])["seed"] == 5
        listed = client.get("/sdapi/v1/sd-models").json()
    entry = next(item for item in listed if item["model_name"] == "sd2-v")
    assert entry["family"] == "sd2"
