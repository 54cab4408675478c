"""H.264 mp4 files: write frames atomically, read them back, concatenate clips.

Videos are H.264 (libx264, yuv420p) in mp4, written to a temporary file and moved into place,
so a crash never leaves a half-written video under the final name. The encoder runs with a
fixed thread count and bit-exact muxing, so the same frames give the same bytes on a machine.
Rates are exact fractions (24000/1001 for 23.976), so editorial rates keep their timing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from story.tasks.atomic import partial_path, publish
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import check_frames, letterbox

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
# mbtree=0: x264's macroblock-tree rate control gives different bytes for the same frames.
ENCODER_OPTIONS = {"crf": "16", "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}


def exact_rate(fps: float | Fraction, what: str | os.PathLike[str]) -> Fraction:
    """A frame rate as an exact fraction (23.976... -> 24000/1001), or AssemblyError."""
    if isinstance(fps, Fraction):
        rate = fps
    elif fps and np.isfinite(fps):
        rate = Fraction(fps).limit_denominator(1001)
    else:
        rate = Fraction(0)
    if rate <= 0:
        raise AssemblyError(f"{what}: fps must be a positive number, got {fps}")
    return rate


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class Mp4Writer:
    """Streams RGB frames into an H.264 mp4; the file appears under its name only on success."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        options: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fps = exact_rate(fps, path)
        self.options = dict(options or ENCODER_OPTIONS)
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._tmp = partial_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(
                str(self._tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}
            )
        except (OSError, av.FFmpegError) as exc:
            raise AssemblyError(f"{self.path}: cannot write the video: {exc}") from exc
        self._stream: Any = None

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream(CODEC, rate=self.fps, options=dict(self.options))
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
        try:
            self._container.mux(self._stream.encode(video_frame))
        except (OSError, av.FFmpegError) as exc:
            raise AssemblyError(f"{self.path}: cannot write the video: {exc}") from exc
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self.frames == 0:
            self.abort()
            raise AssemblyError(f"{self.path}: no frames to write")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            publish(self._tmp, self.path)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise AssemblyError(f"{self.path}: cannot write the video: {exc}") from exc

    def abort(self) -> None:
        """Drop the partial file."""
        with contextlib.suppress(av.FFmpegError):
            self._container.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

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


def write_mp4(path: str | os.PathLike[str], frames: np.ndarray, fps: float | Fraction) -> None:
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


def mp4_rate(path: str | os.PathLike[str]) -> Fraction:
    """The frame rate an mp4 declares, as an exact fraction."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise AssemblyError(f"{path}: cannot read the video: {exc}") from exc
    return Fraction(rate)


def mp4_fps(path: str | os.PathLike[str]) -> float:
    """The frame rate an mp4 declares."""
    return float(mp4_rate(path))


def concat_mp4(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fps: float | Fraction,
    size: tuple[int, int] | None = None,
) -> int:
    """Decode clips in order and re-encode them as one mp4, all letterboxed to `size` (H, W).

    Without `size` the first clip's size is used. Returns the number of frames written.
    """
    if not paths:
        raise AssemblyError(f"{out}: nothing to concatenate")
    with Mp4Writer(out, fps) as writer:
        for path in paths:
            for frame in iter_mp4(path):
                target = size or writer.size or frame.shape[:2]
                writer.write(
                    letterbox(frame, (target[0] + target[0] % 2, target[1] + target[1] % 2))
                )
        return writer.frames
