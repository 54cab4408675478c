"""Shot-boundary detection on downscaled frames, and manifest time ranges as frame ranges.

The change between consecutive frames is the mean of two measures on small HSV frames: the
colour-histogram distance (robust to motion) and the mean absolute pixel difference (catches cuts
between shots of similar colour). A cut is a change that is both large in absolute terms
(`threshold`) and several times (`ratio`) the typical change around it, so steady camera motion,
which changes every frame a little, is not cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from story.tasks.errors import MediaError
from story.tasks.library.media import MediaInfo, VideoReader

_BINS = (16, 8, 8)
_RANGES = (180, 256, 256)


@dataclass(frozen=True)
class Shot:
    """A run of frames without a cut: [start_frame, end_frame) and the same range in seconds."""

    start_frame: int
    end_frame: int
    start: float
    end: float

    @property
    def frames(self) -> int:
        """Number of frames in the shot."""
        return self.end_frame - self.start_frame


def frame_changes(reader: VideoReader, analysis_size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Change score in [0, 1] between each frame and the one before it (index 0 scores 0)."""
    scores = np.zeros(reader.info.frames, np.float32)
    previous: tuple[np.ndarray, np.ndarray] | None = None
    index = 0
    for chunk in reader.iter_frames(size=analysis_size):
        for frame in chunk:
            current = _features(frame)
            if previous is not None:
                scores[index] = _change(previous, current)
            previous = current
            index += 1
    return scores


def detect_shots(
    reader_or_uri: VideoReader | str,
    *,
    threshold: float = 0.2,
    ratio: float = 3.0,
    window: int = 4,
    min_shot_frames: int = 8,
    analysis_size: tuple[int, int] = (64, 64),
) -> list[Shot]:
    """Split a video into shots; a video without cuts gives one shot covering all of it.

    A frame starts a new shot when its change score is at least `threshold` and at least `ratio`
    times the median score of the `window` frames on each side. No shot is shorter than
    `min_shot_frames`, so a video shorter than twice that is returned whole without decoding.
    """
    if isinstance(reader_or_uri, VideoReader):
        return _detect(reader_or_uri, threshold, ratio, window, min_shot_frames, analysis_size)
    with VideoReader(reader_or_uri) as reader:
        return _detect(reader, threshold, ratio, window, min_shot_frames, analysis_size)


def split_range(info: MediaInfo, start: float | None, end: float | None) -> tuple[int, int]:
    """Manifest seconds to a frame range [first, last), rounded to the nearest frame and clamped."""
    first = 0 if start is None else round(start * info.fps)
    last = info.frames if end is None else round(end * info.fps)
    first, last = max(0, min(first, info.frames)), max(0, min(last, info.frames))
    if last <= first:
        span = (
            f"{start if start is not None else 0:g}-{end if end is not None else info.duration:g}"
        )
        raise MediaError(
            info.uri, "empty range", f"{span} s holds no frame of a {info.duration:g} s video"
        )
    return first, last


def _detect(
    reader: VideoReader,
    threshold: float,
    ratio: float,
    window: int,
    min_shot_frames: int,
    analysis_size: tuple[int, int],
) -> list[Shot]:
    info = reader.info
    cuts: list[int] = []
    if info.frames >= 2 * max(min_shot_frames, 1):
        scores = frame_changes(reader, analysis_size)
        cuts = _pick_cuts(scores, threshold, ratio, window, max(min_shot_frames, 1))
    bounds = [0, *cuts, info.frames]
    return [
        Shot(a, b, a / info.fps, b / info.fps) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _pick_cuts(
    scores: np.ndarray, threshold: float, ratio: float, window: int, min_shot_frames: int
) -> list[int]:
    """Strongest qualifying frames first, each kept only if no shot gets shorter than allowed."""
    total = scores.size
    candidates = []
    for i in range(1, total):
        around = np.concatenate([scores[max(1, i - window) : i], scores[i + 1 : i + 1 + window]])
        typical = float(np.median(around)) if around.size else 0.0
        if scores[i] >= threshold and scores[i] >= ratio * typical:
            candidates.append(i)
    cuts: list[int] = []
    for i in sorted(candidates, key=lambda c: -scores[c]):
        bounds = sorted([0, *cuts, i, total])
        if min(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)) >= min_shot_frames:
            cuts.append(i)
    return sorted(cuts)


def _features(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return hsv.astype(np.float32), hist / max(float(hist.sum()), 1.0)


def _change(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    hsv_a, hist_a = a
    hsv_b, hist_b = b
    diff = np.abs(hsv_a - hsv_b)
    diff[..., 0] = np.minimum(diff[..., 0], 180 - diff[..., 0])
    pixels = float((diff / (np.array(_RANGES, np.float32) / np.array([2, 1, 1]))).mean())
    histogram = 0.5 * float(np.abs(hist_a - hist_b).sum())
    return 0.5 * (pixels + histogram)
