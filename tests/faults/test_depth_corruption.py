"""A damaged depth-store entry is caught by its stored sha256 (or the zip CRC) and recomputed,
never handed to a render."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from story.models.depth import TinyDepthConfig, TinyDepthEstimator, TinyDepthNet
from story.tasks.structure.depth_store import (
    DepthStore,
    StructureStoreError,
    get_or_compute_depth,
    make_key,
)
from tests.faults.conftest import Recorder
from tests.tasks.structure.test_depth_store import write_clip


@pytest.fixture
def estimator(tmp_path: Path) -> TinyDepthEstimator:
    torch.manual_seed(0)
    folder = tmp_path / "depth-net"
    TinyDepthNet(TinyDepthConfig(channels=(8, 16), groups=4, train_size=32)).save(folder)
    return TinyDepthEstimator(folder, device="cpu")


def _entry_with_stale_hash(path: Path) -> bytes:
    """The entry rewritten as a valid zip whose array no longer matches its stored sha256."""
    with np.load(path) as data:
        structure, stored = data["structure"].copy(), data["sha256"]
    structure.flat[0] = structure.flat[0] + np.float16(0.5)
    buffer = io.BytesIO()
    np.savez(buffer, structure=structure, sha256=stored)
    return buffer.getvalue()


def _flipped_byte(path: Path) -> bytes:
    """The entry with one byte of its array data inverted, as bit rot on disk would leave it."""
    data = bytearray(path.read_bytes())
    start = bytes(data).index(b"structure.npy") + 200
    data[start] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("damage", [_flipped_byte, _entry_with_stale_hash])
def test_a_corrupted_depth_entry_is_detected_and_recomputed(
    tmp_path: Path, estimator: TinyDepthEstimator, damage, fault: Recorder
) -> None:
    video = write_clip(tmp_path / "a.mp4")
    store = DepthStore(tmp_path / "depth")
    row = {"clip_id": "clip-a", "uri": str(video), "frame_indices": [0, 1, 2, 3]}
    good = get_or_compute_depth(store, estimator, row, size=(16, 16))
    entry = store.path(make_key("clip-a", estimator.model_id, [0, 1, 2, 3], (16, 16)))
    entry.write_bytes(damage(entry))

    with pytest.raises(StructureStoreError, match=str(entry)):
        store.get(entry.stem)
    again = get_or_compute_depth(store, estimator, row, size=(16, 16))
    fault(
        f"depth store: entry damaged ({damage.__name__.strip('_').replace('_', ' ')})",
        "detected on read, recomputed identical",
        "detected on read, recomputed identical"
        if np.array_equal(again, good)
        else "recomputed, but not identical",
    )
    np.testing.assert_array_equal(again, good)
    np.testing.assert_array_equal(store.get(entry.stem), good)
