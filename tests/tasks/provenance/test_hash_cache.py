"""Remembered file hashes: the same digests as a full hash, and never stale after an edit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from story.tasks.hashing import sha256_tree
from story.tasks.provenance import hash_cache as hash_cache_module
from story.tasks.provenance.hash_cache import HashCache


def _checkpoint(folder: Path) -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"frames": 4}')
    (folder / "unet" / "weights.safetensors").write_bytes(bytes(range(256)) * 64)
    return folder


def test_folder_and_file_hashes_match_a_full_hash(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    cache = HashCache(tmp_path / "cache.json")
    assert cache.tree(folder) == sha256_tree(folder)
    weights = folder / "unet" / "weights.safetensors"
    assert cache.tree(weights) == sha256_tree(weights)


def test_an_unchanged_folder_is_not_read_again_even_by_a_new_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(hash_cache_module, "RACY_S", 0.0)
    first = HashCache(tmp_path / "cache.json").tree(folder)

    def refuse(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(hash_cache_module, "sha256_file", refuse)
    assert HashCache(tmp_path / "cache.json").tree(folder) == first


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(hash_cache_module, "RACY_S", 0.0)
    cache = HashCache(tmp_path / "cache.json")
    before = cache.tree(folder)

    weights = folder / "unet" / "weights.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    after = cache.tree(folder)
    assert after != before
    assert after == sha256_tree(folder)


def test_a_file_written_just_now_is_hashed_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    cache = HashCache(tmp_path / "cache.json")
    cache.tree(folder)
    reads: list[str] = []
    real = hash_cache_module.sha256_file
    monkeypatch.setattr(hash_cache_module, "sha256_file", lambda p: reads.append(p) or real(p))
    cache.tree(folder)
    assert len(reads) == 2
