"""Checkpoint / VAE discovery and A1111's cached short hash."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from pipelines.models import checkpoint_files
from pipelines.models.checkpoint_files import HashCache, discover_checkpoints, discover_vaes


def _write(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def hash_calls(monkeypatch):
    """Counts real hashing passes over file contents."""
    calls: list[Path] = []
    real = checkpoint_files.sha256_of_file

    def counting(file: Path) -> str:
        calls.append(Path(file))
        return real(file)

    monkeypatch.setattr(checkpoint_files, "sha256_of_file", counting)
    return calls


# -- HashCache ---------------------------------------------------------------------------------------


def test_short_hash_is_first_ten_hex_of_sha256(tmp_path):
    data = os.urandom(3 * (1 << 20) + 123)  # several 1 MiB blocks plus a partial one
    model = _write(tmp_path / "model.safetensors", data)
    cache = HashCache(tmp_path / "cache" / "hashes.json")
    assert cache.short_hash(model) == hashlib.sha256(data).hexdigest()[:10]
    assert cache.sha256(model) == hashlib.sha256(data).hexdigest()


def test_second_call_and_new_instance_do_not_rehash(tmp_path, hash_calls):
    model = _write(tmp_path / "model.ckpt")
    cache_file = tmp_path / "cache" / "hashes.json"
    first = HashCache(cache_file).short_hash(model)
    cache = HashCache(cache_file)
    assert cache.short_hash(model) == first
    assert HashCache(cache_file).short_hash(tmp_path / "." / "model.ckpt") == first  # same absolute path
    assert len(hash_calls) == 1
    entry = json.loads(cache_file.read_text())["entries"][str(model.resolve())]
    assert entry["sha256"].startswith(first) and entry["size"] == model.stat().st_size


def test_changed_file_is_rehashed(tmp_path, hash_calls):
    model = _write(tmp_path / "model.safetensors", b"version 1")
    cache = HashCache(tmp_path / "hashes.json")
    old = cache.short_hash(model)
    _write(model, b"version two")  # size changes
    new = cache.short_hash(model)
    assert new == hashlib.sha256(b"version two").hexdigest()[:10] != old
    stat = model.stat()
    _write(model, b"version 3!!")  # same size as before: only mtime tells
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.short_hash(model) == hashlib.sha256(b"version 3!!").hexdigest()[:10]
    assert len(hash_calls) == 3


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"version": 99, "entries": {}}', ""])
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path, content):
    cache_file = _write(tmp_path / "hashes.json", content.encode())
    model = _write(tmp_path / "model.ckpt")
    assert HashCache(cache_file).short_hash(model) == hashlib.sha256(b"weights").hexdigest()[:10]
    assert str(model.resolve()) in json.loads(cache_file.read_text())["entries"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hashes.json", "model.ckpt"]  # no temp files left


def test_cached_short_hash_never_reads_the_file(tmp_path, hash_calls):
    model = _write(tmp_path / "model.ckpt")
    cache = HashCache(tmp_path / "hashes.json")
    assert cache.cached_short_hash(model) is None
    value = cache.short_hash(model)
    assert cache.cached_short_hash(model) == value
    assert len(hash_calls) == 1


# -- discovery ---------------------------------------------------------------------------------------


def _make_model_tree(root: Path) -> None:
    _write(root / "b-model.safetensors", b"b")
    _write(root / "A-model.ckpt", b"a")
    _write(root / "sub" / "deeper" / "nested.safetensors", b"n")
    _write(root / "sub" / "readme.txt")
    _write(root / "sub" / "preview.png")
    _write(root / "sub" / "model.json", b"{}")
    _write(root / "my.vae.safetensors", b"v")  # A1111 lists *.vae.* as VAEs, not checkpoints
    _write(root / "tiny-diffusers" / "model_index.json", b"{}")
    _write(root / "tiny-diffusers" / "unet" / "diffusion_pytorch_model.safetensors", b"u")
    _write(root / "tiny-diffusers" / "vae" / "diffusion_pytorch_model.safetensors", b"v")


def test_discovers_files_and_diffusers_folders_recursively(tmp_path):
    root = tmp_path / "Stable-diffusion"
    _make_model_tree(root)
    infos = discover_checkpoints([root, tmp_path / "missing"], HashCache(tmp_path / "hashes.json"))
    assert [info.name for info in infos] == ["A-model", "b-model", "sub/deeper/nested", "tiny-diffusers"]
    by_name = {info.name: info for info in infos}
    assert by_name["sub/deeper/nested"].path == (root / "sub" / "deeper" / "nested.safetensors").resolve()
    short = hashlib.sha256(b"a").hexdigest()[:10]
    assert by_name["A-model"].short_hash == short and by_name["A-model"].title == f"A-model [{short}]"
    folder = by_name["tiny-diffusers"]
    assert folder.path == (root / "tiny-diffusers").resolve()
    assert folder.short_hash is None and folder.title == "tiny-diffusers"
    assert not any(info.is_demo for info in infos)


def test_symlink_loops_are_followed_once_and_linked_folders_are_listed(tmp_path):
    """A link back up the tree (models/Stable-diffusion/loop -> ..) used to hang start-up at 100% CPU."""
    root = tmp_path / "Stable-diffusion"
    _write(root / "a.safetensors", b"a")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub").mkdir()
    (root / "sub" / "back").symlink_to(tmp_path, target_is_directory=True)
    elsewhere = tmp_path / "other-disk"
    _write(elsewhere / "linked.safetensors", b"l")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(
        discover_checkpoints([root], HashCache(tmp_path / "hashes.json"))), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the scan did not finish"
    assert [info.name for info in result[0]] == ["a", "linked/linked"]
    assert sorted(p.name for p in discover_vaes([root])) == ["a.safetensors", "linked.safetensors"]


def test_a_diffusers_folder_passed_directly_is_one_checkpoint(tmp_path):
    _write(tmp_path / "tiny" / "model_index.json", b"{}")
    _write(tmp_path / "tiny" / "unet" / "diffusion_pytorch_model.safetensors")
    infos = discover_checkpoints([tmp_path / "tiny"], HashCache(tmp_path / "hashes.json"))
    assert [(i.name, i.path) for i in infos] == [("tiny", (tmp_path / "tiny").resolve())]


def test_same_stem_twice_keeps_both_selectable(tmp_path):
    _write(tmp_path / "m" / "model.ckpt", b"1")
    _write(tmp_path / "m" / "model.safetensors", b"2")
    infos = discover_checkpoints([tmp_path / "m"], HashCache(tmp_path / "hashes.json"))
    assert [info.name for info in infos] == ["model.ckpt", "model.safetensors"]


def test_listing_without_hashing_uses_only_cached_hashes(tmp_path, hash_calls):
    root = tmp_path / "models"
    cached = _write(root / "cached.safetensors", b"c")
    _write(root / "fresh.safetensors", b"f")
    cache = HashCache(tmp_path / "hashes.json")
    cache.short_hash(cached)
    infos = discover_checkpoints([root], cache, compute_hashes=False)
    expected = {"cached": hashlib.sha256(b"c").hexdigest()[:10], "fresh": None}
    assert {i.name: i.short_hash for i in infos} == expected
    assert len(hash_calls) == 1


def test_discover_vaes(tmp_path):
    vae_dir, ckpt_dir = tmp_path / "VAE", tmp_path / "Stable-diffusion"
    _write(vae_dir / "kl-f8.pt")
    _write(vae_dir / "sub" / "mse.safetensors")
    _write(vae_dir / "old.ckpt")
    _write(vae_dir / "notes.txt")
    _make_model_tree(ckpt_dir)
    assert [p.name for p in discover_vaes([vae_dir])] == ["kl-f8.pt", "mse.safetensors", "old.ckpt"]
    found = discover_vaes([vae_dir], checkpoint_dirs=[ckpt_dir])
    assert [p.name for p in found] == ["kl-f8.pt", "mse.safetensors", "my.vae.safetensors", "old.ckpt"]
    assert discover_vaes([tmp_path / "missing"]) == []
