"""Assembly: per-plot mp4s, the story.mp4 that concatenates them, and what a plot produced.

Videos are H.264 (libx264, yuv420p) in mp4, written to a temporary file and moved into place,
so a crash never leaves a half-written video under the final name. The encoder runs with a
fixed thread count and bit-exact muxing, so the same frames give the same bytes on a machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np

from story.tasks.errors import StoryError

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
ENCODER_OPTIONS = {"crf": "16", "preset": "medium", "threads": "1"}
SEPARATOR = 2


class AssemblyError(StoryError):
    """Frames or videos that cannot be assembled: names the file and the problem."""


@dataclass
class PlotRecord:
    """Everything one plot produced, for the storyboard, the timeline and the manifest.

    `structure` is the guide the model saw (depth/edges/motion) in [-1, 1]; `generated` is one
    clip or a list of candidate clips (rendered side by side in the plot's mp4).
    """

    index: int
    text: str
    query: str
    prompt: str
    clip_id: str | None
    clip_uri: str | None
    clip_caption: str | None
    retrieved_frames: np.ndarray | None
    structure: np.ndarray | None
    generated: np.ndarray | list[np.ndarray]
    video_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def candidates(self) -> list[np.ndarray]:
        """The generated clips as a list (one entry unless candidates were rendered)."""
        return list(self.generated) if isinstance(self.generated, list) else [self.generated]

    @property
    def frame_count(self) -> int:
        return int(self.candidates[0].shape[0])


def check_frames(frames: Any, what: str) -> np.ndarray:
    """A (T,H,W,3) uint8 array with T >= 1, or AssemblyError naming `what`."""
    if not isinstance(frames, np.ndarray):
        raise AssemblyError(
            f"{what}: expected a numpy array of frames, got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
        raise AssemblyError(f"{what}: expected frames shaped (T,H,W,3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise AssemblyError(f"{what}: expected uint8 frames, got {frames.dtype}")
    return frames


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


class Mp4Writer:
    """Streams RGB frames into an H.264 mp4; the file appears under its name only on success."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise AssemblyError(f"{path}: fps must be a positive number, got {fps}")
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._tmp = _temp_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(
                str(self._tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}
            )
        except (OSError, av.FFmpegError) as exc:
            raise AssemblyError(f"{self.path}: cannot write the video: {exc}") from exc
        self._stream: Any = None

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream(CODEC, rate=self.fps, options=dict(ENCODER_OPTIONS))
        stream.width = width
        stream.height = height
        stream.pix_fmt = PIXEL_FORMAT
        stream.codec_context.thread_count = 1
        self._stream = stream
        self.size = (height, width)

    def write(self, frame: np.ndarray) -> None:
        """Append one (H,W,3) uint8 frame; every frame must have the first frame's size."""
        frame = _even(np.ascontiguousarray(frame))
        if self._stream is None:
            self._open_stream(*frame.shape[:2])
        elif frame.shape[:2] != self.size:
            raise AssemblyError(
                f"{self.path}: frame {self.frames} is {frame.shape[:2]}, expected {self.size}"
            )
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.frames
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self.frames == 0:
            self.abort()
            raise AssemblyError(f"{self.path}: no frames to write")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            os.replace(self._tmp, self.path)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise AssemblyError(f"{self.path}: cannot write the video: {exc}") from exc

    def abort(self) -> None:
        """Drop the partial file."""
        with contextlib.suppress(av.FFmpegError):
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_mp4(path: str | os.PathLike[str], frames: np.ndarray, fps: float) -> None:
    """Encode (T,H,W,3) uint8 frames as an H.264 mp4 (odd sizes padded to even), atomically."""
    check_frames(frames, str(path))
    with Mp4Writer(path, fps) as writer:
        for frame in frames:
            writer.write(frame)


def iter_mp4(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode an mp4's frames as (H,W,3) uint8 RGB arrays, one at a time."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except (OSError, av.FFmpegError) as exc:
        raise AssemblyError(f"{path}: cannot decode the video: {exc}") from exc


def read_mp4(path: str | os.PathLike[str]) -> np.ndarray:
    """All frames of an mp4 as one (T,H,W,3) uint8 array."""
    frames = list(iter_mp4(path))
    if not frames:
        raise AssemblyError(f"{path}: the video has no frames")
    return np.stack(frames)


def mp4_fps(path: str | os.PathLike[str]) -> float:
    """The frame rate an mp4 declares."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate or container.streams.video[0].base_rate
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise AssemblyError(f"{path}: cannot read the video: {exc}") from exc
    return float(rate)


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def concat_mp4(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fps: float,
    size: tuple[int, int] | None = None,
) -> int:
    """Decode clips in order and re-encode them as one mp4, all scaled to `size` (H, W).

    Without `size` the first clip's size is used. Returns the number of frames written.
    """
    if not paths:
        raise AssemblyError(f"{out}: nothing to concatenate")
    with Mp4Writer(out, fps) as writer:
        for path in paths:
            for frame in iter_mp4(path):
                target = size or writer.size or frame.shape[:2]
                writer.write(_fit(frame, (target[0] + target[0] % 2, target[1] + target[1] % 2)))
        return writer.frames


def side_by_side(clips: Iterable[np.ndarray]) -> np.ndarray:
    """Candidate clips next to each other (T,H,max W sum,3), shorter ones hold their last frame."""
    clips = [check_frames(c, f"candidate {i}") for i, c in enumerate(clips)]
    if not clips:
        raise AssemblyError("side_by_side: no clips")
    length = max(c.shape[0] for c in clips)
    height = max(c.shape[1] for c in clips)
    width = sum(c.shape[2] for c in clips) + SEPARATOR * (len(clips) - 1)
    out = np.zeros((length, height, width, 3), np.uint8)
    x = 0
    for clip in clips:
        held = np.concatenate([clip, np.repeat(clip[-1:], length - clip.shape[0], axis=0)])
        out[:, : clip.shape[1], x : x + clip.shape[2]] = held
        x += clip.shape[2] + SEPARATOR
    return out
