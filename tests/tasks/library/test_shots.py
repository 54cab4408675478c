"""Shot-boundary detection and manifest time ranges on real tiny videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from story.tasks.errors import MediaError
from story.tasks.library.media import VideoReader, probe
from story.tasks.library.shots import Shot, detect_shots, split_range

FILES = Path(__file__).resolve().parents[2] / "test_files"


def _contiguous(shots: list[Shot], frames: int, fps: float) -> None:
    assert shots[0].start_frame == 0
    assert shots[-1].end_frame == frames
    for before, after in zip(shots[:-1], shots[1:], strict=True):
        assert before.end_frame == after.start_frame
    for shot in shots:
        assert shot.start == pytest.approx(shot.start_frame / fps)
        assert shot.end == pytest.approx(shot.end_frame / fps)
        assert shot.frames == shot.end_frame - shot.start_frame > 0


def test_three_shots_are_found_at_their_cuts() -> None:
    with VideoReader(str(FILES / "cuts.mp4")) as reader:
        shots = detect_shots(reader)
        _contiguous(shots, reader.info.frames, reader.info.fps)
    assert len(shots) == 3
    assert abs(shots[1].start_frame - 16) <= 1
    assert abs(shots[2].start_frame - 32) <= 1


def test_camera_motion_is_one_shot() -> None:
    info = probe(str(FILES / "pan.mp4"))
    shots = detect_shots(str(FILES / "pan.mp4"))
    assert shots == [Shot(0, info.frames, 0.0, info.duration)]


@pytest.mark.parametrize("name", ["vp9.webm", "mjpeg.avi", "odd.mp4"])
def test_short_smooth_clips_are_one_shot(name: str) -> None:
    info = probe(str(FILES / name))
    assert detect_shots(str(FILES / name), min_shot_frames=4) == [
        Shot(0, info.frames, 0.0, info.duration)
    ]


def test_no_shot_is_shorter_than_the_minimum() -> None:
    uri = str(FILES / "cuts.mp4")
    assert len(detect_shots(uri, min_shot_frames=20)) == 1
    assert len(detect_shots(uri, min_shot_frames=16)) == 3
    assert len(detect_shots(uri, threshold=200.0)) == 1


def test_threshold_is_contentdetectors_hsv_change() -> None:
    """The default (27 of 255) finds both cuts, 60 is above both; a threshold so low that every
    frame qualifies merges the run into one shot instead of cutting at every frame."""
    uri = str(FILES / "cuts.mp4")
    assert [s.start_frame for s in detect_shots(uri)] == [0, 16, 32]
    assert [s.start_frame for s in detect_shots(uri, threshold=60.0)] == [0]
    assert [s.start_frame for s in detect_shots(uri, threshold=0.5)] == [0]


def test_a_short_last_shot_joins_the_one_before() -> None:
    uri = str(FILES / "cuts.mp4")
    shots = detect_shots(uri, min_shot_frames=17)
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 48)]
    shots = detect_shots(uri, min_shot_frames=16)
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 16), (16, 32), (32, 48)]


def test_detection_then_sampling_reuses_one_reader() -> None:
    with VideoReader(str(FILES / "cuts.mp4")) as reader:
        shots = detect_shots(reader)
        clips = [reader.read(range(s.start_frame, s.end_frame)) for s in shots]
    assert [len(c) for c in clips] == [s.frames for s in shots]
    first_colour = clips[0].reshape(-1, 3).mean(0)
    second_colour = clips[1].reshape(-1, 3).mean(0)
    assert abs(first_colour - second_colour).max() > 40


def test_split_range_maps_seconds_to_clamped_frames() -> None:
    info = probe(str(FILES / "cuts.mp4"))
    assert split_range(info, None, None) == (0, 48)
    assert split_range(info, 1.0, 2.0) == (8, 16)
    assert split_range(info, 2.49, None) == (20, 48)
    assert split_range(info, 5.0, 100.0) == (40, 48)
    with pytest.raises(MediaError) as caught:
        split_range(info, 10.0, 20.0)
    assert caught.value.reason == "empty range"
    assert "cuts.mp4" in str(caught.value)
