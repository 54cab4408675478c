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
from story.tasks.hashing import frames_sha256, to_plain
from story.tasks.script.parse import Story

STORY_VIDEO = "story.mp4"
PLOTS_DIR = "plots"
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

    def manifest_entry(self, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """The plot's manifest row (the render flow adds seed, depth_key, clip source hash)."""
        video = None
        if self.video_path is not None:
            video = Path(os.path.relpath(Path(self.video_path).resolve(), Path(out_dir).resolve()))
        return {
            "index": self.index,
            "text": self.text,
            "query": self.query,
            "prompt": self.prompt,
            "clip_id": self.clip_id,
            "clip_uri": self.clip_uri,
            "clip_caption": self.clip_caption,
            "frames": self.frame_count,
            "frames_sha256": [frames_sha256(c) for c in self.candidates],
            "video": video.as_posix() if video else None,
            "params": to_plain(self.params),
        }


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write a file through a temporary sibling and a rename; failures name the file."""
    target = Path(path)
    tmp = _temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AssemblyError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    return target


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
            os.replace(self._tmp, self.path)
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
    """Scale a frame into (H, W) keeping its aspect ratio; the rest is black (letterbox)."""
    if frame.shape[:2] == size:
        return frame
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    new_h = max(1, min(height, round(frame.shape[0] * scale)))
    new_w = max(1, min(width, round(frame.shape[1] * scale)))
    scaled = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = scaled
    return out


def concat_mp4(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fps: float,
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


def plot_video_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """Where a plot's mp4 lives inside a render folder."""
    return Path(out_dir) / PLOTS_DIR / f"plot_{index:03d}.mp4"


def write_outputs(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    fps: float,
    render_id: str | None = None,
) -> dict[str, Any]:
    """Write every render output but the manifest: per-plot mp4s (candidates side by side),
    story.mp4, storyboard.html and timeline.otio. Records without a video get one at
    `plot_video_path`. Returns the paths, relative to `out_dir`, for the manifest."""
    # Imported here because both modules build on this one's PlotRecord.
    from story.tasks.outputs.storyboard import write_storyboard
    from story.tasks.outputs.timeline import write_timeline

    out = Path(out_dir)
    ordered = sorted(records, key=lambda r: r.index)
    if not ordered:
        raise AssemblyError(f"{out}: no plots to assemble")
    for record in ordered:
        if record.video_path is None:
            record.video_path = plot_video_path(out, record.index)
            candidates = record.candidates
            frames = candidates[0] if len(candidates) == 1 else side_by_side(candidates)
            write_mp4(record.video_path, check_frames(frames, str(record.video_path)), fps)
    video = out / STORY_VIDEO
    concat_mp4([r.video_path for r in ordered if r.video_path is not None], video, fps)
    storyboard = write_storyboard(out, story, ordered, render_id=render_id)
    timeline = write_timeline(out, story, ordered, fps, render_id=render_id)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()

    return {
        "video": rel(video),
        "storyboard": rel(storyboard),
        "timeline": rel(timeline),
        "plots": [rel(r.video_path) for r in ordered if r.video_path is not None],
    }
