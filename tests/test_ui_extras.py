"""The Extras tab in-process (no browser): its place among the tabs, A1111's controls, the Generate handler on
each sub-tab (single image, files, a folder confined to the data dir) and "Send to extras"."""

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from pipelines.launch_flags import parse_flags
from ui import tab_extras
from ui.values import UnreadableImage

# resize tab, scale, max side, width, height, crop, upscaler 1, upscaler 2, visibility
SCALE_BY_2_LANCZOS = ("scale_by", 2, 0, 512, 512, True, "Lanczos", "None", 0)


def noise(w=40, h=32, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return app.create_app(parse_flags(["--data-dir", str(tmp_path_factory.mktemp("data"))]))


def run(parts, mode, image=None, files=None, input_dir="", output_dir="", show=True, controls=SCALE_BY_2_LANCZOS):
    resize_tab, *rest = controls
    return tab_extras.run_tab(parts.engine, parts.settings.data_dir, mode, resize_tab, image, files, input_dir,
                              output_dir, show, *rest)


def test_extras_tab_sits_between_img2img_and_png_info_with_a1111_controls(parts):
    tabs = [b for b in parts.blocks.blocks.values() if isinstance(b, gr.Tab) and b.elem_id and b.elem_id.startswith(
        "tab_")]
    order = [t.elem_id for t in tabs]
    assert order.index("tab_extras") == order.index("tab_img2img") + 1
    assert order.index("tab_pnginfo") == order.index("tab_extras") + 1
    by_id = {b.elem_id: b for b in parts.blocks.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["extras_upscaler_1"].choices[0][0] == "None" and by_id["extras_upscaler_1"].value == "None"
    assert by_id["extras_upscaling_resize"].value == 4  # A1111's defaults
    assert (by_id["extras_upscaling_resize_w"].value, by_id["extras_upscaling_crop"].value) == (512, True)
    for elem_id in ("extras_image", "extras_image_batch", "extras_batch_input_dir", "extras_batch_output_dir",
                    "extras_show_extras_results", "extras_upscaler_2", "extras_upscaler_2_visibility",
                    "extras_generate", "extras_interrupt", "img2img_send_to_extras", "pnginfo_send_to_extras"):
        assert elem_id in by_id, elem_id


def test_single_image_is_upscaled_and_saved(parts):
    source = noise()
    source.info["parameters"] = "a cat\nSteps: 5, Seed: 1"
    gallery, info = run(parts, "single_image", image=source)
    assert info == "<p>Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos</p>"
    (path,) = gallery
    assert path.startswith(str(parts.settings.outputs_dir / "extras-images"))
    with Image.open(path) as saved:
        saved.load()
        assert saved.size == (80, 64) and saved.info["parameters"] == "a cat\nSteps: 5, Seed: 1"


def test_missing_or_unreadable_single_image_is_a_readable_error(parts):
    with pytest.raises(gr.Error, match="no image in Single Image"):
        run(parts, "single_image")
    with pytest.raises(gr.Error, match="not a readable image"):
        run(parts, "single_image", image=UnreadableImage("truncated"))


def test_batch_files_go_on_past_an_unreadable_file(parts, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    noise(16, 16).save(good)
    bad.write_bytes(b"nope")
    gallery, info = run(parts, "batch_process", files=[str(bad), str(good)])
    assert [p.rsplit("/", 1)[1] for p in gallery] == ["good.png"]
    assert "bad.png: not a readable image" in info


def test_batch_from_directory_inside_the_data_dir_only(parts):
    data = parts.settings.data_dir
    (data / "inputs").mkdir()
    noise(16, 16, 1).save(data / "inputs" / "one.png")
    gallery, _ = run(parts, "batch_from_directory", input_dir="inputs", output_dir="upscaled", show=False)
    assert gallery == [] and (data / "upscaled" / "one.png").exists()
    with Image.open(data / "upscaled" / "one.png") as saved:
        assert saved.size == (32, 32)
    for folder, field in (("/etc", "input_dir"), ("../elsewhere", "input_dir")):
        with pytest.raises(gr.Error, match=field):
            run(parts, "batch_from_directory", input_dir=folder)
    with pytest.raises(gr.Error, match="output_dir"):
        run(parts, "batch_from_directory", input_dir="inputs", output_dir="/tmp")
    with pytest.raises(gr.Error, match="input directory not selected"):
        run(parts, "batch_from_directory", input_dir=" ")


def test_scale_to_and_bad_upscaler_from_the_tab(parts):
    gallery, info = run(parts, "single_image", image=noise(100, 75),
                        controls=("scale_to", 2, 0, 256, 128, True, "Nearest", "None", 0))
    with Image.open(gallery[0]) as saved:
        assert saved.size == (256, 128)
    assert "Postprocess crop to: 256x128" in info
    with pytest.raises(gr.Error, match="upscaler_1"):
        run(parts, "single_image", image=noise(), controls=("scale_by", 2, 0, 512, 512, True, "Gone", "None", 0))


def test_send_to_extras_carries_the_generation_text():
    sent = tab_extras.image_for_extras(noise(), "a cat\nSteps: 5")
    assert sent.info["parameters"] == "a cat\nSteps: 5"
