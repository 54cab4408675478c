"""The structure store, get-or-compute, and the depth worker on tiny real video files."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from story.models.depth import TinyDepthConfig, TinyDepthEstimator, TinyDepthNet
from story.tasks.structure.depth_step import DepthJob, DepthWorker
from story.tasks.structure.depth_store import (
    DepthStore,
    StructureStoreError,
    get_or_compute_depth,
    make_key,
)


def write_clip(path: Path, frames: int = 12, size: int = 32, seed: int = 0) -> Path:
    """A short H.264 clip of a bright disc moving over a gradient."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(seed)
    cx = rng.uniform(6, size - 6)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = np.stack([ys / size * 200, xs / size * 120, 60 + 0 * ys], -1)
            img[(xs - cx - t) ** 2 + (ys - size / 2) ** 2 < 25] = (250, 240, 30)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "depth-net"
    TinyDepthNet(TinyDepthConfig(channels=(8, 16), groups=4, train_size=32)).save(folder)
    return folder


def test_put_get_has_keys_and_sidecar(tmp_path: Path):
    store = DepthStore(tmp_path / "depth")
    key = make_key("clip-a", "tiny-abc", [0, 8, 16], (4, 5), "frame")
    array = np.linspace(-1, 1, 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)

    assert not store.has(key)
    with pytest.raises(StructureStoreError, match=key.digest):
        store.get(key)
    path = store.put(key, array, {"uri": "a.mp4"})

    assert store.has(key) and store.has(key.digest)
    assert path.parent.name == key.digest[:2]
    np.testing.assert_allclose(store.get(key), array, atol=1e-3)
    assert store.get(key).dtype == np.float32
    assert list(store.keys()) == [key.digest]
    meta = store.meta(key)
    assert meta["clip_id"] == "clip-a" and meta["frame_indices"] == [0, 8, 16]
    assert meta["size"] == [4, 5] and meta["uri"] == "a.mp4"
    assert not list(path.parent.glob("*.tmp"))


def test_an_entry_rebuilt_elsewhere_has_the_same_bytes(tmp_path: Path, monkeypatch):
    # Two projects (two clones) store the same array for the same clip a day apart:
    # byte-identical files, so DVC locks one hash for the store whichever machine built it.
    array = np.linspace(-1, 1, 2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    key = make_key("clip-a", "tiny-abc", [0, 8], (4, 5), "frame")
    files = []
    now = time.time()
    for day, name in enumerate(("one", "elsewhere/two")):
        project = tmp_path / name
        (project / ".dvc").mkdir(parents=True)
        media = project / "datasets" / "media" / "a.mp4"
        store = DepthStore(project / "datasets" / "depth")
        with monkeypatch.context() as patch:
            patch.setattr(time, "time", lambda d=day: now + 86400 * d)
            path = store.put(key, array, {"uri": str(media)})
        assert store.meta(key)["uri"] == "../media/a.mp4"
        files.append((path.read_bytes(), store.meta_path(key.digest).read_bytes()))
        np.testing.assert_allclose(store.get(key), array, atol=1e-3)
    assert files[0] == files[1]


def test_every_key_part_changes_the_digest():
    base = make_key("clip", "tiny-1", [0, 8], (64, 64), "frame")
    variants = [
        make_key("clip2", "tiny-1", [0, 8], (64, 64), "frame"),
        make_key("clip", "tiny-2", [0, 8], (64, 64), "frame"),
        make_key("clip", "tiny-1", [0, 9], (64, 64), "frame"),
        make_key("clip", "tiny-1", [0, 8], (32, 64), "frame"),
        make_key("clip", "tiny-1", [0, 8], None, "frame"),
        make_key("clip", "tiny-1", [0, 8], (64, 64), "clip"),
    ]
    assert len({base.digest, *(v.digest for v in variants)}) == 7
    assert make_key("clip", "tiny-1", (np.int64(0), 8), [64, 64]).digest == base.digest


def test_get_or_compute_computes_once_then_reads(tmp_path: Path, tiny_model: Path):
    video = write_clip(tmp_path / "a.mp4")
    store = DepthStore(tmp_path / "depth")
    estimator = TinyDepthEstimator(tiny_model, device="cpu")
    row = {"clip_id": "clip-a", "uri": str(video), "frame_indices": [0, 4, 8]}

    first = get_or_compute_depth(store, estimator, row, size=(16, 16))
    stamp = (
        store.path(make_key("clip-a", estimator.model_id, [0, 4, 8], (16, 16))).stat().st_mtime_ns
    )
    second = get_or_compute_depth(store, estimator, row, size=(16, 16))

    assert first.shape == (3, 16, 16)
    assert first.min() >= -1 and first.max() <= 1
    np.testing.assert_array_equal(first, second)
    key = make_key("clip-a", estimator.model_id, [0, 4, 8], (16, 16))
    assert store.path(key).stat().st_mtime_ns == stamp
    by_path = get_or_compute_depth(store, estimator, (str(video), [0, 4, 8]), size=(16, 16))
    np.testing.assert_array_equal(by_path, first)
    assert len(list(store.keys())) == 2


def test_a_damaged_entry_is_recomputed(tmp_path: Path, tiny_model: Path):
    video = write_clip(tmp_path / "a.mp4")
    store = DepthStore(tmp_path / "depth")
    estimator = TinyDepthEstimator(tiny_model, device="cpu")
    row = {"clip_id": "clip-a", "uri": str(video), "frame_indices": [0, 1]}
    good = get_or_compute_depth(store, estimator, row, size=(8, 8))
    store.path(make_key("clip-a", estimator.model_id, [0, 1], (8, 8))).write_bytes(b"not a zip")

    np.testing.assert_array_equal(get_or_compute_depth(store, estimator, row, size=(8, 8)), good)


def test_worker_batch_reports_a_bad_clip_and_completes_the_rest(tmp_path: Path, tiny_model: Path):
    good = [write_clip(tmp_path / f"c{i}.mp4", seed=i) for i in range(3)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good[0].read_bytes()[:300])
    jobs = [DepthJob(f"clip-{i}", str(p), (0, 4, 8)) for i, p in enumerate(good)]
    jobs.insert(1, DepthJob("clip-broken", str(broken), (0, 4, 8)))
    worker = DepthWorker({"workspace": str(tmp_path / "ws")}, model=str(tiny_model), size=(16, 16))

    first = worker.process_batch(jobs)
    second = worker.process_batch(jobs)

    assert [r.status for r in first] == ["computed", "failed", "computed", "computed"]
    assert first[1].clip_id == "clip-broken" and first[1].reason
    assert [r.status for r in second] == ["cached", "failed", "cached", "cached"]
    assert all(r.frames == 3 and r.compute_s > 0 for r in first if r.status == "computed")
    stored = worker.store.get(first[0].key)
    assert stored.shape == (3, 16, 16)
    direct = worker.estimator.estimate(
        np.stack([_decode(good[0], i) for i in (0, 4, 8)]), size=(16, 16)
    )
    np.testing.assert_allclose(stored, direct, atol=2e-3)


def _decode(path: Path, index: int) -> np.ndarray:
    from story.tasks.library.media import read_frames

    return read_frames(str(path), [index])[0]
