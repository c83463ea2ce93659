"""SDXL on a tiny model written in the original single-file layout: loading, conditioning, img2img, inpaint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_engine import make_demo_engine
from pictures import blocky_picture, box_mask
from sdxl_export import TEXT_WIDTH, TIME_EMBED_DIM, build_tiny_sdxl, sdxl_state_dict, write_tiny_sdxl

from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.models.checkpoint_loader import CheckpointError, load_checkpoint
from pipelines.models.families import ModelFamily
from pipelines.models.sdxl_pipelines import SeededXLImg2ImgPipeline, SeededXLInpaintPipeline


def _models_dir(root):
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl")
    write_tiny_sdxl(_models_dir(root) / "tiny-xl.safetensors")
    return make_demo_engine(root, preview_every=0)


@pytest.fixture(scope="module")
def inpaint_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl9")
    write_tiny_sdxl(_models_dir(root) / "tiny-xl-inpainting.safetensors", in_channels=9, seed=2)
    return make_demo_engine(root, preview_every=0)


def request(**kw):
    base = dict(init_image=blocky_picture(64, 64), prompt="a red barn", width=64, height=64, steps=3, seed=77,
                save_images=False, sampler_name="Euler")
    base.update(kw)
    return Img2ImgRequest(**base)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


# -- loading -----------------------------------------------------------------------------------------------


def test_single_file_loads_offline_and_converts_back_to_the_same_tensors(tmp_path):
    written = write_tiny_sdxl(tmp_path / "xl.safetensors")
    loaded = load_checkpoint(tmp_path / "xl.safetensors")
    assert loaded.family is ModelFamily.SDXL
    assert type(loaded.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert loaded.tokenizer_2.pad_token_id == 0 and loaded.tokenizer.pad_token_id == loaded.tokenizer.eos_token_id
    assert loaded.vae.config.scaling_factor == 0.13025
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(written, part).state_dict(), getattr(loaded, part).state_dict()
        assert set(ours) == set(theirs), part
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part
    # and back: the loaded model written out again gives the very same original-layout tensors
    again, first = sdxl_state_dict(loaded), sdxl_state_dict(written)
    assert set(again) == set(first) and all(torch.equal(again[k], first[k]) for k in first)


def test_nine_channel_file_loads_as_inpainting(tmp_path):
    write_tiny_sdxl(tmp_path / "xl-inpaint.safetensors", in_channels=9)
    loaded = load_checkpoint(tmp_path / "xl-inpaint.safetensors")
    assert loaded.family is ModelFamily.SDXL and loaded.is_inpainting


def test_v_pred_and_ztsnr_keys_reach_the_scheduler(tmp_path):
    write_tiny_sdxl(tmp_path / "xl-v.safetensors", v_pred=True, ztsnr=True)
    loaded = load_checkpoint(tmp_path / "xl-v.safetensors")
    assert loaded.v_prediction
    alphas = np.cumprod(1 - np.asarray(loaded.scheduler.config.trained_betas))
    assert alphas[-1] < 1e-6  # zero terminal SNR
    plain = load_checkpoint(write_tiny_sdxl(tmp_path / "xl-eps.safetensors") and tmp_path / "xl-eps.safetensors")
    assert not plain.v_prediction and plain.scheduler.config.trained_betas is None


@pytest.mark.parametrize("marker", ["yaml", "sidecar"])
def test_v_prediction_from_a_yaml_or_the_sidecar(tmp_path, marker):
    import json  # noqa: PLC0415

    path = tmp_path / "xl-v.safetensors"
    write_tiny_sdxl(path)
    if marker == "yaml":
        path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: v\n")
    else:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        sidecar["scheduler"] = {"prediction_type": "v_prediction"}
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    assert load_checkpoint(path).v_prediction


def test_refiner_and_incomplete_files_are_refused_by_name(tmp_path):
    from ldm_export import save_state_dict  # noqa: PLC0415

    state = sdxl_state_dict(build_tiny_sdxl())
    no_bigg = {k: v for k, v in state.items() if not k.startswith("conditioner.embedders.1.")}
    save_state_dict(no_bigg, tmp_path / "part.safetensors")
    with pytest.raises(CheckpointError, match="OpenCLIP bigG"):
        load_checkpoint(tmp_path / "part.safetensors")
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in state.items()
               if not k.startswith("conditioner.embedders.0.")}
    save_state_dict(refiner, tmp_path / "refiner.safetensors")
    with pytest.raises(CheckpointError, match="refiner"):
        load_checkpoint(tmp_path / "refiner.safetensors")


def test_diffusers_folder_loads(tmp_path):
    from diffusers import StableDiffusionXLPipeline  # noqa: PLC0415

    parts = build_tiny_sdxl(seed=5)
    pipe = StableDiffusionXLPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                     text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
                                     tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=parts.scheduler,
                                     add_watermarker=False)
    pipe.save_pretrained(tmp_path / "xl-folder")
    loaded = load_checkpoint(tmp_path / "xl-folder")
    assert loaded.family is ModelFamily.SDXL and loaded.tokenizer_2.pad_token == "!"
    assert torch.equal(loaded.text_encoder_2.text_projection.weight, parts.text_encoder_2.text_projection.weight)


# -- generation ---------------------------------------------------------------------------------------------


def test_family_shown_and_sdxl_pipelines_built(engine, inpaint_engine):
    assert "(SDXL)" in engine.models.status_line()
    assert isinstance(engine.models.pipeline("img2img"), SeededXLImg2ImgPipeline)
    assert isinstance(inpaint_engine.models.pipeline("inpaint"), SeededXLInpaintPipeline)


def test_img2img_runs_seeded_and_batch_invariant(engine):
    a, b = engine.img2img(request()), engine.img2img(request())
    assert a.images[0].size == (64, 64)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert not np.array_equal(pixels(a.images[0]), pixels(engine.img2img(request(seed=78)).images[0]))
    batch = engine.img2img(request(batch_size=2))
    single = engine.img2img(request(seed=78))
    first = getattr(batch, "index_of_first_image", 0)  # a grid may lead the images
    assert np.abs(pixels(batch.images[first + 1]) - pixels(single.images[0])).max() <= 1
    assert parse_infotext(a.infotexts[0])["Model"] == "tiny-xl"


def _capture_unet_inputs(pipe):
    calls = []

    def hook(module, args, kwargs):
        calls.append((kwargs["encoder_hidden_states"].clone(), {k: v.clone() for k, v in
                                                                 kwargs["added_cond_kwargs"].items()}))
    return calls, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def test_size_conditioning_and_pooled_embeddings_reach_the_unet(engine):
    pipe = engine.models.pipeline("img2img")
    calls, handle = _capture_unet_inputs(pipe)
    try:
        engine.img2img(request(width=96, height=64, prompt="a cat", negative_prompt="blurry", cfg_scale=5))
    finally:
        handle.remove()
    hidden, added = calls[0]
    assert hidden.shape == (2, 77, 2 * TEXT_WIDTH)  # negative + positive, CLIP-L 32 + bigG 32 features
    assert added["text_embeds"].shape == (2, TEXT_WIDTH)
    # original size = target size = (height, width), crop (0, 0), for both halves of the CFG batch
    assert added["time_ids"].tolist() == [[64, 96, 0, 0, 64, 96]] * 2
    assert pipe.unet.config.projection_class_embeddings_input_dim == 6 * TIME_EMBED_DIM + TEXT_WIDTH
    # the pooled vector is bigG's projection of the prompt's first chunk; hidden states are both encoders'
    # penultimate layers
    tokenizer, encoder = pipe.tokenizer_2, pipe.text_encoder_2
    ids = tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    out = encoder(ids, output_hidden_states=True)
    assert torch.allclose(added["text_embeds"][1], out.text_embeds[0], atol=1e-5)
    assert torch.allclose(hidden[1, :, TEXT_WIDTH:], out.hidden_states[-2][0], atol=1e-5)
    first = pipe.text_encoder(pipe.tokenizer("a cat", padding="max_length", max_length=77,
                                             return_tensors="pt").input_ids, output_hidden_states=True)
    assert torch.allclose(hidden[1, :, :TEXT_WIDTH], first.hidden_states[-2][0], atol=1e-5)


def test_empty_negative_prompt_is_zeros(engine):
    pipe = engine.models.pipeline("img2img")
    calls, handle = _capture_unet_inputs(pipe)
    try:
        engine.img2img(request(negative_prompt=""))
        engine.img2img(request(negative_prompt="ugly"))
    finally:
        handle.remove()
    (empty_hidden, empty_added), (named_hidden, named_added) = calls[0], calls[-1]
    assert not empty_hidden[0].any() and not empty_added["text_embeds"][0].any()
    assert named_hidden[0].abs().sum() > 0 and named_added["text_embeds"][0].abs().sum() > 0


def test_prompt_editing_switches_embeddings_and_pooled(engine):
    pipe = engine.models.pipeline("img2img")
    calls, handle = _capture_unet_inputs(pipe)
    try:
        engine.img2img(request(prompt="[a cat:a dog:2]", steps=4, denoising_strength=1.0))
    finally:
        handle.remove()
    first, last = calls[0], calls[-1]
    assert not torch.equal(first[0][1], last[0][1])
    assert not torch.equal(first[1]["text_embeds"][1], last[1]["text_embeds"][1])
    assert torch.equal(first[1]["text_embeds"][0], last[1]["text_embeds"][0])  # the negative stays


def test_four_channel_inpaint_keeps_outside_of_mask(engine):
    picture = blocky_picture(64, 64)
    result = engine.img2img(request(init_image=picture, mask=box_mask((64, 64), (16, 16, 48, 48)),
                                    denoising_strength=1.0))
    out = pixels(result.images[0])
    assert np.abs(out[:8, :8] - pixels(picture)[:8, :8]).max() <= 2  # outside the mask: the picture
    assert np.abs(out[24:40, 24:40] - pixels(picture)[24:40, 24:40]).mean() > 5


def test_nine_channel_inpaint_runs_with_mask_conditioning(inpaint_engine):
    pipe = inpaint_engine.models.pipeline("inpaint")
    seen = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        result = inpaint_engine.img2img(request(mask=box_mask((64, 64), (16, 16, 48, 48))))
    finally:
        handle.remove()
    assert seen and set(seen) == {9}
    assert result.images[0].size == (64, 64)
    again = inpaint_engine.img2img(request(mask=box_mask((64, 64), (16, 16, 48, 48))))
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))


def test_fp16_nan_decode_falls_back_to_fp32(engine):
    """SDXL's VAE overflows in half precision: here a decoder whose first activations pass 65504 (fine in fp32,
    inf - inf = NaN in fp16 after the group norm). The decode is redone in fp32, with a notice."""
    vae = engine.models.current.components.vae
    saved = {k: v.clone() for k, v in vae.state_dict().items()}
    try:
        with torch.no_grad():
            vae.post_quant_conv.bias.fill_(60000.0)  # representable in fp16; its sum over the conv is not
            vae.decoder.conv_in.weight.abs_()
        reference = engine.img2img(request())  # fp32: finite
        vae.to(torch.float16)
        result = engine.img2img(request())
        assert vae.dtype == torch.float32  # switched for good, as A1111's automatic --no-half-vae
        assert any("NaN" in notice for notice in result.notices)
        assert np.abs(pixels(result.images[0]) - pixels(reference.images[0])).max() <= 3
        assert pixels(result.images[0]).std() > 0
    finally:
        vae.to(torch.float32)
        vae.load_state_dict(saved)


def test_txt2img_runs_on_sdxl_with_its_size_conditioning(engine):
    from pipelines.generation.txt2img_request import Txt2ImgRequest  # noqa: PLC0415

    pipe = engine.models.pipeline("txt2img")
    calls, handle = _capture_unet_inputs(pipe)
    try:
        result = engine.txt2img(Txt2ImgRequest(prompt="a cat", width=64, height=96, steps=3, seed=3,
                                               save_images=False, sampler_name="Euler"))
    finally:
        handle.remove()
    assert result.images[0].size == (64, 96) and pixels(result.images[0]).std() > 1
    assert calls[0][1]["time_ids"].tolist() == [[96, 64, 0, 0, 96, 64]] * 2
    assert calls[0][1]["text_embeds"].shape == (2, TEXT_WIDTH)


def test_sdxl_kohya_lora_reaches_both_encoders_and_the_unet_and_comes_off(engine):
    from sdxl_export import write_tiny_sdxl_lora  # noqa: PLC0415

    write_tiny_sdxl_lora(engine.models.settings.lora_dirs[0] / "xl-style.safetensors")
    engine.models.loras.refresh()
    plain = engine.img2img(request())
    styled = engine.img2img(request(prompt="a red barn <lora:xl-style:1>"))
    assert set(engine.models.pipeline("img2img").get_list_adapters()) == {"unet", "text_encoder", "text_encoder_2"}
    assert "Lora hashes" in styled.infotexts[0]
    assert np.abs(pixels(plain.images[0]) - pixels(styled.images[0])).mean() > 1
    again = engine.img2img(request())
    assert np.array_equal(pixels(plain.images[0]), pixels(again.images[0]))


def test_sdxl_embedding_loads_clip_l_and_clip_g_into_their_encoders(engine):
    from safetensors.torch import save_file  # noqa: PLC0415

    folder = engine.models.settings.embeddings_dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    clip_l, clip_g = torch.randn(2, TEXT_WIDTH) * 3, torch.randn(2, TEXT_WIDTH) * 3
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(folder / "xl-concept.safetensors"))
    save_file({"emb_params": torch.randn(2, TEXT_WIDTH)}, str(folder / "sd15-concept.safetensors"))
    engine.models.embeddings.refresh()
    plain = engine.img2img(request(prompt="a photo of"))
    styled = engine.img2img(request(prompt="a photo of xl-concept"))
    pipe = engine.models.pipeline("img2img")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[-2:], clip_l)
    assert torch.equal(pipe.text_encoder_2.get_input_embeddings().weight[-2:], clip_g)
    assert "TI hashes" in styled.infotexts[0] and "xl-concept" in styled.infotexts[0]
    assert np.abs(pixels(plain.images[0]) - pixels(styled.images[0])).mean() > 0.5
    usable, skipped = engine.models.embeddings.listing(TEXT_WIDTH, sdxl=True)
    assert [e.name for e in usable] == ["xl-concept"] and [e.name for e in skipped] == ["sd15-concept"]


@pytest.mark.parametrize("script", ["poor man's outpainting", "outpainting mk2"])  # SD upscale: slow here
def test_img2img_scripts_run_on_sdxl(engine, script):
    from test_dtypes import assert_sane, run_case  # noqa: PLC0415

    req, result = run_case(engine, script)
    assert_sane(req, result)
    assert all("Model: tiny-xl" in text for text in result.infotexts)


def test_live_preview_uses_the_sdxl_latent_colour_map(engine, monkeypatch):
    """SDXL's VAE has its own latent space: the engine asks the preview for A1111's SDXL map, not SD 1.x's."""
    import pipelines.generation.engine as engine_module
    from pipelines.generation.latent_preview import latent_preview

    calls = []

    def recording(latents, sdxl=False):
        calls.append(sdxl)
        return latent_preview(latents, sdxl)

    monkeypatch.setattr(engine_module, "latent_preview", recording)
    monkeypatch.setattr(engine, "preview_every", 1)
    previews = []
    engine.img2img(request(steps=2, denoising_strength=1.0), on_progress=lambda u: previews.append(u.preview))
    assert calls and all(calls) and all(p is not None and p.size == (8, 8) for p in previews)
