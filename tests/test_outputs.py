"""Saving outputs: names, atomicity, concurrency and embedded infotext (pipelines/io/outputs.py)."""

import datetime
import multiprocessing
import threading

import numpy as np
import pytest
from PIL import Image

from pipelines.io import outputs
from pipelines.io.outputs import dated_output_dir, next_sequence_number, read_infotext, save_image

INFOTEXT = (
    "a cat, photo: 35mm\nNegative prompt: blurry, ünïcödé 日本\n"
    'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x48, Lora hashes: "a: 1, b: 2"'
)


def noise_image(width=64, height=48, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def no_temp_files(directory):
    """No temporary or claim files (both hidden) are left behind."""
    return not [p for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp"])
def test_infotext_round_trip_through_saved_file(tmp_path, fmt):
    path = save_image(noise_image(), INFOTEXT, tmp_path, seed=1234, fmt=fmt)
    assert path.name == f"00000-1234.{fmt}"
    with Image.open(path) as img:
        assert img.size == (64, 48)
        assert read_infotext(img) == INFOTEXT


def test_png_pixels_are_lossless_and_text_chunk_is_named_parameters(tmp_path):
    img = noise_image(seed=3)
    path = save_image(img, "hello", tmp_path, seed=7)
    with Image.open(path) as saved:
        assert saved.text["parameters"] == "hello"
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(img))


def test_no_infotext_reads_back_none(tmp_path):
    for fmt in ("png", "jpg", "webp"):
        path = save_image(noise_image(), None, tmp_path, seed=1, fmt=fmt)
        with Image.open(path) as img:
            assert read_infotext(img) is None
    assert read_infotext(noise_image()) is None


def test_rgba_saved_as_jpeg(tmp_path):
    path = save_image(Image.new("RGBA", (16, 16), (1, 2, 3, 100)), "x", tmp_path, seed=0, fmt="jpg")
    with Image.open(path) as img:
        assert img.mode == "RGB" and read_infotext(img) == "x"


def test_numbering_starts_at_zero_and_continues_after_existing_files(tmp_path):
    first = save_image(noise_image(), "a", tmp_path, seed=5)
    second = save_image(noise_image(), "b", tmp_path, seed=5)
    assert (first.name, second.name) == ("00000-5.png", "00001-5.png")
    (tmp_path / "00041-999-some prompt.png").write_bytes(b"")  # A1111-style name from elsewhere
    (tmp_path / "notes.txt").write_text("ignored")
    assert save_image(noise_image(), "c", tmp_path, seed=6).name == "00042-6.png"
    assert next_sequence_number(tmp_path) == 43


def test_concurrent_saves_get_distinct_names(tmp_path):
    errors = []
    saved = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(thread_index):
        try:
            start.wait()
            for i in range(5):
                image, text = noise_image(16, 16, seed=i), f"t{thread_index}-{i}"
                path = save_image(image, text, tmp_path, seed=thread_index)
                with lock:
                    saved.append(path)
        except Exception as exc:  # surfaced below; a thread exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(saved) == len(set(saved)) == 40
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 40 and no_temp_files(tmp_path)
    assert sorted(int(name.split("-")[0]) for name in files) == list(range(40))
    texts = set()
    for path in saved:
        with Image.open(path) as img:
            texts.add(read_infotext(img))
    assert len(texts) == 40  # every file holds its own, complete image


def test_failed_encode_leaves_nothing(tmp_path):
    float_image = Image.new("F", (8, 8))  # PNG cannot store mode F
    with pytest.raises(OSError):
        save_image(float_image, "x", tmp_path, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_crash_midway_through_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    def half_write(img, infotext, path, pil_format, quality, text_chunks=None):
        with open(path, "wb") as f:
            f.write(b"\x89PNG partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(outputs, "_encode", half_write)
    with pytest.raises(RuntimeError):
        save_image(noise_image(), "x", tmp_path, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="bmp"):
        save_image(noise_image(), "x", tmp_path, seed=1, fmt="bmp")


def test_never_overwrites_a_file_that_appears_meanwhile(tmp_path, monkeypatch):
    # Simulate another process taking 00000 between our directory scan and our link.
    real_link = outputs.os.link
    taken = []

    def racing_link(src, dst):
        if not taken:
            (tmp_path / "00000-9.png").write_bytes(b"someone else's")
            taken.append(dst)
        return real_link(src, dst)

    monkeypatch.setattr(outputs.os, "link", racing_link)
    path = save_image(noise_image(), "mine", tmp_path, seed=9)
    assert path.name == "00001-9.png"
    assert (tmp_path / "00000-9.png").read_bytes() == b"someone else's"
    assert no_temp_files(tmp_path)


def test_works_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(outputs.os, "link", no_links)
    first = save_image(noise_image(), "a", tmp_path, seed=2)
    second = save_image(noise_image(), "b", tmp_path, seed=2)
    assert (first.name, second.name) == ("00000-2.png", "00001-2.png")
    with Image.open(second) as img:
        assert read_infotext(img) == "b"
    assert no_temp_files(tmp_path)


def test_dated_output_dir(tmp_path):
    directory = dated_output_dir(tmp_path, today=datetime.date(2024, 3, 9))
    assert directory == tmp_path / "img2img-images" / "2024-03-09" and directory.is_dir()
    assert dated_output_dir(tmp_path, "img2img-grids", datetime.date(2024, 3, 9)).is_dir()
    assert dated_output_dir(tmp_path).name == datetime.date.today().isoformat()


def _save_from_process(directory, process_index, count):
    for i in range(count):
        save_image(noise_image(16, 16, seed=i), f"p{process_index}-{i}", directory, seed=process_index)


def test_concurrent_processes_get_distinct_numbers(tmp_path):
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    processes = [context.Process(target=_save_from_process, args=(tmp_path, p, 5)) for p in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    numbers = sorted(int(p.name.split("-")[0]) for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert numbers == list(range(20)) and no_temp_files(tmp_path)


def test_stale_claim_from_a_crashed_saver_is_skipped(tmp_path):
    (tmp_path / ".00000.claim").write_bytes(b"")
    assert save_image(noise_image(), "x", tmp_path, seed=3).name == "00001-3.png"
