"""Probe, decode, hash and sample real tiny media files from tests/test_files/."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

from story.tasks.errors import MediaError, StoryError
from story.tasks.library.media import (
    VideoReader,
    fitted_size,
    make_clip_id,
    probe,
    read_frames,
    sample_indices,
    source_hash,
)
from tests.scripts import load_script

FILES = Path(__file__).resolve().parents[2] / "test_files"


def _generator():
    return load_script(FILES / "make_test_files.py")


@pytest.mark.parametrize(
    ("name", "frames", "height", "width", "codec"),
    [
        ("cuts.mp4", 48, 64, 64, "h264"),
        ("pan.mp4", 48, 64, 64, "h264"),
        ("odd.mp4", 12, 47, 63, "h264"),
        ("vp9.webm", 16, 64, 64, "vp9"),
        ("mjpeg.avi", 16, 64, 64, "mjpeg"),
    ],
)
def test_good_files_probe_and_decode_every_frame(
    name: str, frames: int, height: int, width: int, codec: str
) -> None:
    info = probe(str(FILES / name))
    assert (info.frames, info.height, info.width, info.codec) == (frames, height, width, codec)
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(frames / 8.0)
    assert info.backend in ("decord", "pyav")
    video = read_frames(str(FILES / name), range(frames))
    assert video.shape == (frames, height, width, 3)
    assert video.dtype == np.uint8


def test_decoded_pixels_match_what_was_encoded() -> None:
    expected = _generator().cut_frames()
    for backend in ("decord", "pyav"):
        with VideoReader(str(FILES / "cuts.mp4"), backend=backend) as reader:
            video = reader.read(range(reader.info.frames))
        mse = ((video.astype(np.float64) - expected) ** 2).mean(axis=(1, 2, 3))
        psnr = 10 * np.log10(255.0**2 / mse)
        assert psnr.min() > 22.0, backend


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero.mp4", "zero bytes"),
        ("truncated.mp4", "truncated"),
        ("truncated_faststart.mp4", "truncated"),
        ("random.mp4", "undecodable"),
        ("text.mp4", "undecodable"),
        ("audio_only.mp4", "no video stream"),
        ("does_not_exist.mp4", "missing file"),
        ("single_frame.mp4", "too few frames"),
    ],
)
def test_bad_media_raises_media_error_with_reason(name: str, reason: str) -> None:
    uri = str(FILES / name)
    with pytest.raises(MediaError) as caught:
        probe(uri)
    assert caught.value.reason == reason
    assert caught.value.uri == uri
    assert str(caught.value).startswith(f"{uri}: {reason}")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("truncated.mp4", "truncated"), ("random.mp4", "undecodable"), ("zero.mp4", "zero bytes")],
)
def test_reading_bad_media_raises_the_same_reason(name: str, reason: str) -> None:
    with pytest.raises(MediaError) as caught:
        read_frames(str(FILES / name), [0])
    assert caught.value.reason == reason


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        probe(str(tmp_path))
    assert caught.value.reason == "missing file"


def test_single_frame_video_decodes_when_one_frame_is_enough() -> None:
    uri = str(FILES / "single_frame.mp4")
    assert probe(uri, min_frames=1).frames == 1
    assert read_frames(uri, [0, 0]).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("name", ["cuts.mp4", "pan.mp4", "odd.mp4", "vp9.webm", "mjpeg.avi"])
def test_decord_and_pyav_give_the_same_pixels(name: str) -> None:
    uri = str(FILES / name)
    with VideoReader(uri, backend="decord") as fast, VideoReader(uri, backend="pyav") as safe:
        assert fast.info.backend == "decord"
        assert safe.info.backend == "pyav"
        last = fast.info.frames - 1
        indices = [last, 0, last // 2, 3, last // 2, last - 1]
        a, b = fast.read(indices), safe.read(indices)
    assert a.shape == b.shape == (6, fast.info.height, fast.info.width, 3)
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 2


def test_read_keeps_order_and_repeats_and_resizes() -> None:
    with VideoReader(str(FILES / "cuts.mp4"), backend="pyav", cache_bytes=0) as reader:
        picked = reader.read([40, 3, 40])
        assert np.array_equal(picked[0], picked[2])
        assert np.array_equal(picked[1], reader.read([3])[0])
        assert not np.array_equal(picked[0], picked[1])
        assert reader.read([0, 47], size=(32, 24)).shape == (2, 32, 24, 3)
        assert reader.read([]).shape == (0, 64, 64, 3)


def test_reading_past_the_end_is_a_media_error() -> None:
    with VideoReader(str(FILES / "cuts.mp4")) as reader, pytest.raises(MediaError) as caught:
        reader.read([0, 48])
    assert caught.value.reason == "frame out of range"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(StoryError, match="unknown video backend"):
        VideoReader(str(FILES / "cuts.mp4"), backend="opencv")


def test_source_hash_follows_bytes_not_names(tmp_path: Path) -> None:
    original = FILES / "cuts.mp4"
    copy = tmp_path / "renamed" / "other.mkv"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    digest = source_hash(str(original))
    assert digest == hashlib.sha256(original.read_bytes()).hexdigest()
    assert source_hash(str(copy)) == digest
    assert source_hash(str(FILES / "pan.mp4")) != digest
    with pytest.raises(MediaError) as caught:
        source_hash(str(tmp_path / "gone.mp4"))
    assert caught.value.reason == "missing file"


def test_clip_id_is_stable_and_depends_on_the_range() -> None:
    digest = source_hash(str(FILES / "cuts.mp4"))
    clip = make_clip_id(digest, 1.0, 2.0)
    assert clip == make_clip_id(digest, 1.0, 2.0)
    assert clip == make_clip_id(digest, 1.0000002, 1.9999998)
    assert 16 <= len(clip) <= 24
    int(clip, 16)
    others = {
        make_clip_id(digest, 1.0, 2.5),
        make_clip_id(digest, 0.0, 2.0),
        make_clip_id(source_hash(str(FILES / "pan.mp4")), 1.0, 2.0),
    }
    assert clip not in others
    assert len(others) == 3


def test_object_store_uri_reads_like_the_local_file() -> None:
    local = FILES / "cuts.mp4"
    uri = f"memory://media-{uuid.uuid4().hex}/clips/cuts.mp4"
    fs = fsspec.filesystem("memory")
    fs.pipe(uri, local.read_bytes())
    try:
        assert source_hash(uri) == source_hash(str(local))
        info = probe(uri)
        assert (info.frames, info.backend) == (48, "pyav")
        indices = [0, 17, 47]
        assert np.array_equal(read_frames(uri, indices), read_frames(str(local), indices))
        fs.pipe(uri + ".empty", b"")
        with pytest.raises(MediaError) as caught:
            probe(uri + ".empty")
        assert caught.value.reason == "zero bytes"
    finally:
        fs.rm(uri.rsplit("/clips/", 1)[0], recursive=True)
    with pytest.raises(MediaError) as caught:
        probe(uri)
    assert caught.value.reason == "missing file"


def test_sample_indices_use_the_stride_when_the_range_allows() -> None:
    assert sample_indices(0, 200) == list(range(0, 128, 8))
    assert sample_indices(10, 131, n=16, stride=8) == list(range(10, 131, 8))
    assert sample_indices(5, 9, n=2, stride=3) == [5, 8]


@pytest.mark.parametrize(("start", "end"), [(0, 40), (3, 19), (100, 216), (0, 120)])
def test_short_ranges_spread_distinct_frames_over_the_whole_range(start: int, end: int) -> None:
    picked = sample_indices(start, end, n=16, stride=8)
    assert len(picked) == 16
    assert picked == sorted(set(picked))
    assert (picked[0], picked[-1]) == (start, end - 1)


@pytest.mark.parametrize(("start", "end"), [(0, 5), (7, 8), (2, 17)])
def test_ranges_shorter_than_n_repeat_every_frame_evenly(start: int, end: int) -> None:
    picked = sample_indices(start, end, n=16, stride=8)
    assert len(picked) == 16
    assert picked == sorted(picked)
    counts = np.bincount(np.array(picked) - start)
    assert len(counts) == end - start
    assert counts.min() >= 1
    assert counts.max() - counts.min() <= 1


def test_empty_range_cannot_be_sampled() -> None:
    with pytest.raises(StoryError, match=r"\[4, 4\)"):
        sample_indices(4, 4)


def test_variable_frame_rate_decodes_every_frame_in_order() -> None:
    uri = str(FILES / "vfr.mp4")
    with VideoReader(uri, backend="decord") as fast, VideoReader(uri, backend="pyav") as safe:
        assert fast.info.frames == safe.info.frames == 24
        a, b = fast.read(range(24)), safe.read(range(24))
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 2
    grey = a.reshape(24, -1).mean(1)
    assert np.all(np.diff(grey) > 5)
    assert np.allclose(grey, np.arange(24) * 10, atol=3)


def test_large_frames_decode_and_resize() -> None:
    uri = str(FILES / "large.mp4")
    info = probe(uri)
    assert (info.frames, info.height, info.width) == (4, 2160, 3840)
    assert read_frames(uri, [3, 0], size=(90, 160)).shape == (2, 90, 160, 3)


def test_container_is_found_from_the_bytes_not_the_extension(tmp_path: Path) -> None:
    renamed = tmp_path / "clip.avi"
    shutil.copyfile(FILES / "cuts.mp4", renamed)
    info = probe(str(renamed))
    assert (info.frames, info.codec) == (48, "h264")
    assert np.array_equal(read_frames(str(renamed), [5]), read_frames(str(FILES / "cuts.mp4"), [5]))


@pytest.mark.parametrize("name", ["cuts.mp4", "vp9.webm", "mjpeg.avi"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8, 0.97])
def test_any_cut_of_a_video_is_reported_truncated(tmp_path: Path, name: str, keep: float) -> None:
    data = (FILES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaError) as caught, VideoReader(str(cut), min_frames=1) as reader:
        reader.read(range(reader.info.frames))
    assert caught.value.reason == "truncated"


def test_fitted_size_keeps_the_aspect_with_even_sides() -> None:
    assert fitted_size(720, 1280, 256) == (144, 256)
    assert fitted_size(2160, 3840, 256) == (144, 256)
    assert fitted_size(1001, 333, 100) == (100, 34)
    assert fitted_size(64, 64, 256) == (64, 64)
    assert fitted_size(720, 1280, None) == (720, 1280)


def test_max_side_has_both_decoders_scale_a_large_video_alike() -> None:
    uri = str(FILES / "large.mp4")
    with (
        VideoReader(uri, backend="decord", max_side=256) as fast,
        VideoReader(uri, backend="pyav", max_side=256) as safe,
        VideoReader(uri) as native,
    ):
        assert (fast.info.height, fast.info.width) == (2160, 3840)  # the file as stored
        assert fast.frame_size == safe.frame_size == (144, 256)
        a, b = fast.read([3, 0]), safe.read([3, 0])
        reference = native.read([3, 0], size=(144, 256))  # area-averaged from full size
        assert a.shape == b.shape == (2, 144, 256, 3)
        assert fast.read([]).shape == (0, 144, 256, 3)
    assert np.abs(a.astype(np.int16) - b).mean() < 0.5
    assert np.abs(a.astype(np.int16) - b).max() <= 8
    assert np.abs(a.astype(np.int16) - reference).mean() < 6


def test_max_side_leaves_a_small_video_untouched() -> None:
    uri = str(FILES / "cuts.mp4")
    with VideoReader(uri, max_side=256) as capped, VideoReader(uri) as native:
        assert capped.frame_size == (64, 64)
        assert np.array_equal(capped.read([0, 20, 47]), native.read([0, 20, 47]))
    with pytest.raises(StoryError, match="max_side"):
        VideoReader(uri, max_side=1)
