"""The img2img Batch tab (A1111 process_batch): a folder of pictures, masks matched by name, PNG info taken from
each file, unreadable files named and skipped, Interrupt, the folder rules, the output names; and the tab's
Generate handler in the built app."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from demo_engine import make_demo_engine
from pictures import blocky_picture, box_mask
from PIL import Image, PngImagePlugin

from pipelines.fields import RequestError
from pipelines.generation.img2img_batch import BatchOptions, find_mask, list_pictures, run_batch
from pipelines.generation.progress import JobControl
from pipelines.generation.requests import Img2ImgRequest
from pipelines.io.infotext import parse_infotext
from pipelines.io.outputs import read_infotext

BOX = (16, 16, 47, 47)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


@pytest.fixture
def data_dir(engine):
    return engine.models.settings.data_dir


def base(**kw):
    values = dict(init_image=Image.new("RGB", (64, 64)), prompt="ui prompt", width=64, height=64, steps=2, seed=5,
                  denoising_strength=0.9, mask_blur_x=0, mask_blur_y=0, save_images=True)
    values.update(kw)
    return Img2ImgRequest(**values)


def folder(root, name, files):
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        if isinstance(content, bytes):
            (path / file_name).write_bytes(content)
        else:
            content.save(path / file_name)
    return path


def arr(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_pictures_are_listed_as_a1111_walks_them(tmp_path):
    root = folder(tmp_path, "in", {"p10.png": Image.new("RGB", (8, 8)), "p2.jpg": Image.new("RGB", (8, 8)),
                                   "notes.txt": b"x", ".hidden.png": Image.new("RGB", (8, 8))})
    folder(root, "sub", {"p1.webp": Image.new("RGB", (8, 8))})
    assert [p.relative_to(root).as_posix() for p in list_pictures(root)] == ["p2.jpg", "p10.png", "sub/p1.webp"]
    masks = [tmp_path / "m" / "a.bmp", tmp_path / "m" / "b.png"]
    assert find_mask(root / "b.jpg", masks) == masks[1] and find_mask(root / "c.jpg", masks) is None
    assert find_mask(root / "c.jpg", masks[:1]) == masks[0]  # one mask: for every picture


def test_a_folder_with_masks_inpaints_each_picture_with_its_own(engine, data_dir):
    pictures = {"a.png": blocky_picture(64, 64, seed=1), "b.png": blocky_picture(64, 64, seed=2),
                "c.png": b"not a picture at all"}
    root = data_dir / "batch1"
    folder(root, "in", pictures)
    folder(root, "masks", {"a.png": box_mask((64, 64), BOX),  # b's mask: another extension, the other half
                           "b.bmp": box_mask((64, 64), (0, 0, 31, 63))})
    options = BatchOptions(input_dir="batch1/in", output_dir="batch1/out", mask_dir=str(root / "masks"))
    result = run_batch(engine.img2img, base(), options, data_dir)
    assert (result.pictures, result.processed) == (3, 2)
    assert any("c.png" in notice and "not a readable picture" in notice for notice in result.notices)
    names = sorted(path.name for path in (root / "out").iterdir())
    assert names == ["00000-a.png", "00001-b.png"]
    for name, box in (("a", BOX), ("b", (0, 0, 31, 63))):
        with Image.open(root / "out" / f"{[n for n in names if n.endswith(f'-{name}.png')][0]}") as saved:
            out = arr(saved)
            infotext = read_infotext(saved)
        mask = np.asarray(box_mask((64, 64), box)) > 0
        diff = np.abs(out - arr(pictures[f"{name}.png"])).max(axis=-1)
        assert diff[~mask].max() == 0 and diff[mask].mean() > 5  # only the masked part was redrawn
        assert "Seed: 5," in infotext and "Mask blur: 0" in infotext
    assert not (engine.outputs_root / "img2img-images").exists() or not any(
        (engine.outputs_root / "img2img-images").rglob("*-a.png"))


def test_a_picture_without_its_mask_is_skipped_with_a_notice(engine, data_dir):
    root = data_dir / "batch2"
    folder(root, "in", {"a.png": blocky_picture(64, 64), "b.png": blocky_picture(64, 64, seed=9)})
    folder(root, "masks", {"a.png": box_mask((64, 64), BOX), "z.png": box_mask((64, 64), BOX)})
    result = run_batch(engine.img2img, base(batch_size=2), BatchOptions("batch2/in", "batch2/out", "batch2/masks"),
                       data_dir)
    assert result.processed == 1 and any("b.png: no mask" in notice for notice in result.notices)
    # several images of one picture: <stem>-<k> (A1111's [generation_number]); no grid among the outputs
    assert sorted(path.name for path in (root / "out").iterdir()) == ["00000-a-1.png", "00001-a-2.png"]
    assert len(result.images) == 2 and result.seeds == [5, 6]


def test_png_info_takes_the_chosen_fields_from_each_file(engine, data_dir):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a castle\nNegative prompt: fog\nSteps: 3, Sampler: Euler, CFG scale: 5, "
                                "Seed: 1234, Size: 64x64")
    root = data_dir / "batch3" / "in"
    root.mkdir(parents=True)
    blocky_picture(64, 64).save(root / "castle.png", pnginfo=info)
    options = BatchOptions("batch3/in", use_png_info=True, png_info_props=("Prompt", "Seed", "Steps", "Sampler"))
    result = run_batch(engine.img2img, base(negative_prompt="ui negative"), options, data_dir)
    parsed = parse_infotext(result.infotexts[0])
    assert parsed["Prompt"] == "ui prompt a castle" and parsed["Negative prompt"] == "ui negative"
    assert (parsed["Seed"], parsed["Steps"], parsed["Sampler"], parsed["CFG scale"]) == ("1234", "3", "Euler", "7")
    # no output folder: saved as a normal run is, in outputs/img2img-images/<date>/
    assert result.paths and result.paths[0].parent.parent == engine.outputs_root / "img2img-images"


def test_interrupt_stops_the_folder(engine, data_dir):
    root = data_dir / "batch4"
    folder(root, "in", {f"p{i}.png": blocky_picture(64, 64, seed=i) for i in range(3)})
    control = JobControl()

    def on_progress(update):
        control.interrupt()  # pressed while the first picture samples

    result = run_batch(engine.img2img, base(steps=6), BatchOptions("batch4/in", "batch4/out"), data_dir,
                       on_progress, control)
    assert result.interrupted and result.processed == 1 and result.pictures == 3
    assert [path.name for path in (root / "out").iterdir()] == ["00000-p0.png"]  # the rest never ran


def test_resize_by_scales_each_picture(engine, data_dir):
    root = data_dir / "batch5"
    folder(root, "in", {"wide.png": blocky_picture(48, 32)})
    result = run_batch(engine.img2img, base(save_images=False), BatchOptions("batch5/in", scale_by=2.0), data_dir)
    assert result.images[0].size == (96, 64)


@pytest.mark.parametrize("options, message", [
    (BatchOptions(""), "no input directory"),
    (BatchOptions("missing"), "does not exist"),
    (BatchOptions("../"), "outside the data directory"),
    (BatchOptions("/"), "outside the data directory"),
    (BatchOptions("afile.png"), "is not a folder"),
    (BatchOptions("batch6", mask_dir="nope"), "does not exist"),
])
def test_folders_are_checked(engine, data_dir, options, message):
    (data_dir / "batch6").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(data_dir / "afile.png")
    with pytest.raises(RequestError, match=message):
        run_batch(engine.img2img, base(), options, data_dir)


# -- the tab in the built app -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import app
    from pipelines.launch_flags import parse_flags

    return app.create_app(parse_flags(["--data-dir", str(tmp_path_factory.mktemp("uidata"))]))


def batch_values(parts, **by_id):
    from ui.values import FIELD_NAMES

    fn = next(f for f in parts.blocks.fns.values() if f.name == "generate")
    args = [getattr(component, "value", None) for component in fn.inputs]
    ids = [getattr(component, "elem_id", None) for component in fn.inputs]
    args[0] = "batch"  # the mode state: the Batch sub-tab is selected
    fields = {"prompt": "a fox", "steps": 2, "width": 64, "height": 64, "seed": 3, "denoising_strength": 0.9,
              "mask_blur": 0}
    start = ids.index("img2img_prompt")
    for offset, name in enumerate(FIELD_NAMES):
        if name in fields:
            args[start + offset] = fields[name]
    for elem_id, value in by_id.items():
        args[ids.index(elem_id)] = value
    return fn.fn, args


def test_the_batch_tab_runs_a_folder_and_reports_each_picture(parts):
    data_dir = parts.settings.data_dir
    folder(data_dir, "in", {"a.png": blocky_picture(64, 64), "b.png": blocky_picture(64, 64, seed=4),
                            "broken.png": b"\x89PNG broken"})
    folder(data_dir, "masks", {"a.png": box_mask((64, 64), BOX), "b.png": box_mask((64, 64), BOX)})
    generate, args = batch_values(parts, img2img_batch_input_dir="in", img2img_batch_output_dir="out",
                                  img2img_batch_inpaint_mask_dir="masks")
    updates = list(generate(*args))
    texts = [u[4] for u in updates[1:-1] if isinstance(u[4], str)]
    assert any("1 out of 3: a.png" in t for t in texts) and any("2 out of 3: b.png" in t for t in texts)
    gallery, results, _, infotext, text, *_ = updates[-1]
    assert len(results.images) == 2 and results.seeds == [3, 3]  # A1111: one seed for the whole folder
    assert "broken.png" in text and infotext.startswith("a fox")
    assert sorted(p.name for p in (data_dir / "out").iterdir()) == ["00000-a.png", "00001-b.png"]
    generate, args = batch_values(parts, img2img_batch_input_dir="no/such/folder")
    with pytest.raises(gr.Error, match="Input directory.*does not exist"):
        list(generate(*args))


def test_skip_drops_the_current_picture_and_the_folder_goes_on(engine, data_dir):
    root = data_dir / "batch7"
    folder(root, "in", {f"p{i}.png": blocky_picture(64, 64, seed=i) for i in range(2)})
    control = JobControl()

    def on_progress(update):
        if update.job == 0 and update.step == 1:
            control.skip()  # pressed while the first picture samples: its batch is dropped

    result = run_batch(engine.img2img, base(steps=4), BatchOptions("batch7/in", "batch7/out"), data_dir,
                       on_progress, control)
    assert not result.interrupted and result.skipped_batches == 1 and result.processed == 2
    assert [path.name for path in (root / "out").iterdir()] == ["00000-p1.png"]


def test_the_gallery_shows_the_grid_first_with_seeds_aligned(parts):
    generate, args = batch_values(parts)
    fn = next(f for f in parts.blocks.fns.values() if f.name == "generate")
    ids = [getattr(component, "elem_id", None) for component in fn.inputs]
    args[0] = "img2img"
    args[ids.index("img2img_image")] = blocky_picture(64, 64)
    args[ids.index("img2img_batch_size")] = 2
    *_, last = generate(*args)
    results, text = last[1], last[4]
    assert len(results.images) == 3 and results.images[0].size == (128, 64)
    assert results.seeds == [3, 3, 4]  # the grid takes the first image's seed (A1111's reuse-seed rule)
    assert text.startswith("Done: 3 images")
