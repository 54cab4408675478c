"""Atomic writes: a file or folder appears whole or not at all, and a failure leaves the old one."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from story.tasks import atomic


def test_write_replaces_the_file_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "folder" / "data.bin"
    atomic.write_bytes(target, b"first")
    atomic.write_bytes(target, b"second", durable=False)
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_json_is_sorted_indented_and_refuses_nan(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    atomic.write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        atomic.write_json(target, {"x": float("nan")})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "frames.npy"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npy"]


def test_atomic_path_serves_writers_that_need_a_filename(tmp_path: Path) -> None:
    target = tmp_path / "frames.npy"
    frames = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    with atomic.atomic_path(target) as partial, partial.open("wb") as handle:
        np.save(handle, frames)
    assert np.array_equal(np.load(target), frames)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_an_oserror_naming_no_partial_left(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    atomic.partial_path(target).symlink_to("/dev/full")
    with pytest.raises(OSError, match="No space left"):
        atomic.write_text(target, "x" * 100_000)
    assert not target.exists()
    assert not atomic.partial_path(target).exists()


def test_threads_writing_one_file_never_tear_it(tmp_path: Path) -> None:
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [
        threading.Thread(target=atomic.write_bytes, args=(target, p), kwargs={"durable": False})
        for p in payloads
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.bin"]


def test_folder_appears_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    final = tmp_path / "renders" / "abc"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    with atomic.atomic_folder(final) as partial:
        (partial / "manifest.json").write_text("{}")
        assert not (final / "manifest.json").exists(), "nothing shows before the block ends"
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in final.parent.iterdir()) == ["abc"]


def test_a_failed_folder_leaves_the_old_one_and_no_partial(tmp_path: Path) -> None:
    final = tmp_path / "abc"
    final.mkdir()
    (final / "manifest.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic.atomic_folder(final) as partial:
        (partial / "manifest.json").write_text("new")
        raise KeyboardInterrupt
    assert (final / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc"]


def test_partial_names_are_hidden_and_per_process(tmp_path: Path) -> None:
    partial = atomic.partial_path(tmp_path / "story.mp4")
    assert partial.parent == tmp_path
    assert partial.name == f".story.mp4.{os.getpid()}.partial"
