"""Probe, hash and decode video files, with decord for speed and PyAV wherever decord cannot.

Every file is first checked cheaply (exists, not empty) and opened with PyAV, which fails with
Python exceptions on bad bytes; decord only ever sees files whose packets PyAV has all demuxed
intact and whose first frame it has decoded, because decord can hang or crash on broken input.
Frame `i` is the i-th frame in presentation order, the same for both backends. Failures raise
`MediaError` with a short, stable reason: "missing file", "zero bytes", "truncated",
"undecodable", "no video stream", "unsupported codec", "too few frames", "frame out of range".
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import av
import cv2
import numpy as np

from story.tasks.errors import MediaError, StoryError
from story.tasks.object_store import is_remote

BACKENDS = ("decord", "pyav")
CACHE_BYTES = 64 * 2**20
_HASH_CHUNK = 2**20
# Leading bytes of containers we can name; a file that starts like one but fails to open was cut.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide")
_SIGNATURES = (
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"RIFF"),
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),
)


@dataclass(frozen=True)
class MediaInfo:
    """What a video holds: frame count, rate, size and codec, and which backend decodes it."""

    uri: str
    frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    backend: str


def source_hash(uri: str) -> str:
    """SHA-256 hex of the file's bytes, streamed; local paths and fsspec URIs (s3://, gs://...)."""
    digest = hashlib.sha256()
    with _open_bytes(uri) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def make_clip_id(source_sha256: str, start: float, end: float) -> str:
    """Content address of a clip: its source bytes and its time range rounded to milliseconds."""
    key = f"{source_sha256}:{round(start * 1000)}:{round(end * 1000)}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def sample_indices(start_frame: int, end_frame: int, n: int = 16, stride: int = 8) -> list[int]:
    """Pick `n` frame indices in [start_frame, end_frame).

    Rule: `n` frames `stride` apart from `start_frame` when they fit; otherwise `n` distinct frames
    spread evenly from the first to the last frame of the range; only a range with fewer than `n`
    frames repeats frames (each frame about equally often, in order).
    """
    length = end_frame - start_frame
    if length <= 0 or n <= 0 or stride <= 0:
        raise StoryError(
            f"cannot sample {n} frames at stride {stride} from [{start_frame}, {end_frame})"
        )
    if (n - 1) * stride < length:
        return [start_frame + k * stride for k in range(n)]
    if length >= n:
        return [int(x) for x in np.round(np.linspace(start_frame, end_frame - 1, n))]
    return [start_frame + (k * length) // n for k in range(n)]


def probe(uri: str, *, min_frames: int = 2) -> MediaInfo:
    """Check that `uri` is a decodable video with at least `min_frames` frames and describe it."""
    with VideoReader(uri, min_frames=min_frames) as reader:
        return reader.info


def read_frames(
    uri: str, indices: Sequence[int], *, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode the given frames as (N, H, W, 3) uint8 RGB, resized to `size` (H, W) if given."""
    with VideoReader(uri, min_frames=1) as reader:
        return reader.read(indices, size=size)


class VideoReader:
    """One open decoder for many reads of the same file (shot detection, then sampling).

    Opening demuxes the whole video stream and decodes its first frame with PyAV. Then
    `backend="auto"` reads with decord, except for object-store URIs and files decord cannot
    open or counts differently, which PyAV reads. Decoded frames are kept (up to `cache_bytes`)
    so shot detection followed by sampling decodes a short clip only once.

    `max_side` has the decoder itself scale frames whose longer side is larger (FFmpeg's
    swscale, bilinear with its filter widened to the shrink, in both backends) to fit it, aspect
    kept, sides even: a reader that only ever looks at small frames (ingest's analyses all work
    at 64 px) then skips the full-size RGB conversion and the resize, and the cache holds a
    whole HD shot. `info` describes the file as stored; `frame_size` is the (height, width)
    frames come out at.
    """

    def __init__(
        self,
        uri: str,
        *,
        backend: str = "auto",
        min_frames: int = 2,
        cache_bytes: int = CACHE_BYTES,
        max_side: int | None = None,
    ) -> None:
        if backend not in ("auto", *BACKENDS):
            raise StoryError(f"unknown video backend {backend!r}; expected auto, decord or pyav")
        if max_side is not None and max_side < 2:
            raise StoryError(f"max_side must be at least 2 pixels, got {max_side}")
        self.uri = str(uri)
        self._cache: dict[int, np.ndarray] = {}
        self._cache_left = cache_bytes
        self._decord: Any = None
        self._pyav = _PyAVDecoder(self.uri)
        try:
            info = self._pyav.info
            if info.frames < min_frames:
                raise MediaError(
                    self.uri, "too few frames", f"{info.frames} frame(s), need {min_frames}"
                )
            self.frame_size = fitted_size(info.height, info.width, max_side)
            scaled = self.frame_size != (info.height, info.width)
            self._pyav.output_size = self.frame_size if scaled else None
            if backend != "pyav":
                self._decord = (
                    None
                    if is_remote(self.uri)
                    else _open_decord(self.uri, info.frames, self.frame_size if scaled else None)
                )
                if self._decord is None and backend == "decord":
                    raise MediaError(self.uri, "undecodable", "decord cannot read this file")
        except BaseException:
            self._pyav.close()
            raise
        self.info = replace(info, backend="decord" if self._decord is not None else "pyav")

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoders; the reader cannot be used afterwards."""
        self._pyav.close()
        self._decord = None
        self._cache.clear()

    def read(self, indices: Sequence[int], *, size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as (N, H, W, 3) uint8 RGB."""
        wanted = [int(i) for i in indices]
        bad = [i for i in wanted if not 0 <= i < self.info.frames]
        if bad:
            raise MediaError(
                self.uri, "frame out of range", f"frame {bad[0]} of {self.info.frames}"
            )
        missing = sorted(set(wanted) - self._cache.keys())
        decoded = dict(zip(missing, self._decode(missing), strict=True)) if missing else {}
        for index, frame in decoded.items():
            self._remember(index, frame)
        frames = [self._cache[i] if i in self._cache else decoded[i] for i in wanted]
        height, width = self.frame_size
        if not frames:
            shape = size or (height, width)
            return np.zeros((0, shape[0], shape[1], 3), np.uint8)
        return np.stack([_resize(f, size) for f in frames])

    def iter_frames(
        self, *, size: tuple[int, int] | None = None, chunk: int = 32
    ) -> Iterator[np.ndarray]:
        """Every frame in order, `chunk` at a time, as (n, H, W, 3) uint8 RGB arrays."""
        for first in range(0, self.info.frames, chunk):
            yield self.read(range(first, min(first + chunk, self.info.frames)), size=size)

    def _remember(self, index: int, frame: np.ndarray) -> None:
        if frame.nbytes <= self._cache_left:
            self._cache[index] = frame
            self._cache_left -= frame.nbytes

    def _decode(self, indices: list[int]) -> list[np.ndarray]:
        if self._decord is not None:
            import decord

            try:
                batch = self._decord.get_batch(indices).asnumpy()
            except decord.DECORDError as exc:
                raise MediaError(self.uri, "undecodable", _first_line(exc)) from exc
            return list(batch)
        return self._pyav.decode(indices)


class _PyAVDecoder:
    """PyAV container with a frame index built by demuxing (not decoding) the video stream."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._container: Any = None
        self.output_size: tuple[int, int] | None = None  # (height, width) to scale to
        self._frames: Iterator[Any] = iter(())
        self._position = -1
        self._bytes = _size(uri)
        if self._bytes == 0:
            raise MediaError(uri, "zero bytes", "the file is empty")
        self._handle = _fsspec_open(uri) if is_remote(uri) else None
        try:
            self._container = _open_container(uri, self._handle)
            self._build_index()
            first = self._decoded([0])[0]  # decoded, not converted: its size is all we need
            self.info = replace(self.info, height=first.height, width=first.width)
        except MediaError as exc:
            self.close()
            if exc.reason != "truncated" and _mp4_cut(uri):
                raise MediaError(uri, "truncated", exc.detail) from exc
            raise
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _build_index(self) -> None:
        """Demux every video packet: frame timestamps, keyframes, and signs of a cut file."""
        container = self._container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise MediaError(self.uri, "no video stream", f"streams: {', '.join(kinds)}")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise MediaError(self.uri, "unsupported codec", "no decoder for the video stream")
        pts: list[int] = []
        key_pts: list[int] = []
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or stamp is None:
                    continue
                if packet.is_corrupt or (packet.pos or 0) + packet.size > self._bytes:
                    raise MediaError(self.uri, "truncated", f"frame {len(pts)} is incomplete")
                pts.append(stamp)
                if packet.is_keyframe:
                    key_pts.append(stamp)
        except av.FFmpegError as exc:
            raise MediaError(self.uri, "truncated", _first_line(exc)) from exc
        pts.sort()
        fps = _frame_rate(stream, pts)
        expected = stream.frames or round(_declared_seconds(container, stream) * fps)
        if len(pts) < expected - expected // 100:
            raise MediaError(self.uri, "truncated", f"{len(pts)} of {expected} frames present")
        if not pts:
            raise MediaError(self.uri, "too few frames", "the video stream has no frames")
        self._stream = stream
        self._pts = pts
        self._pts_to_index = {stamp: i for i, stamp in enumerate(pts)}
        self._keyframes = sorted({bisect.bisect_left(pts, k) for k in key_pts} | {0})
        self.info = MediaInfo(
            uri=self.uri,
            frames=len(pts),
            fps=fps,
            duration=len(pts) / fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            backend="pyav",
        )

    def decode(self, indices: list[int]) -> list[np.ndarray]:
        """Sorted unique indices as RGB arrays, at `output_size` when one is set."""
        scale: dict[str, Any] = {}
        if self.output_size is not None:
            height, width = self.output_size
            scale = {"height": height, "width": width, "interpolation": "BILINEAR"}
        return [frame.to_ndarray(format="rgb24", **scale) for frame in self._decoded(indices)]

    def _decoded(self, indices: list[int]) -> list[Any]:
        """Decode sorted unique indices, seeking only when the next one lies past a keyframe."""
        out: list[Any] = []
        try:
            for target in indices:
                key = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1]
                if not key <= self._position <= target:
                    self._container.seek(self._pts[key], stream=self._stream, backward=True)
                    self._frames = self._container.decode(self._stream)
                    self._position = key
                out.append(self._advance_to(target))
        except av.FFmpegError as exc:
            self._position = -1
            raise MediaError(self.uri, "undecodable", _first_line(exc)) from exc
        return out

    def _advance_to(self, target: int) -> Any:
        for frame in self._frames:
            index = self._pts_to_index.get(frame.pts, self._position)
            self._position = index + 1
            if index == target:
                return frame
            if index > target:
                break
        self._position = -1
        raise MediaError(self.uri, "undecodable", f"frame {target} could not be decoded")


def _open_bytes(uri: str) -> IO[bytes]:
    """Open a local path or fsspec URI for reading after the missing / zero-byte checks."""
    if _size(uri) == 0:
        raise MediaError(uri, "zero bytes", "the file is empty")
    if is_remote(uri):
        return _fsspec_open(uri)
    return open(uri, "rb")  # noqa: SIM115 - the caller closes it


def _fsspec_open(uri: str) -> IO[bytes]:
    import fsspec

    return fsspec.open(uri, "rb").open()


def _size(uri: str) -> int:
    try:
        if is_remote(uri):
            import fsspec

            fs, path = fsspec.core.url_to_fs(uri)
            details = fs.info(path)
            if details.get("type") == "directory":
                raise MediaError(uri, "missing file", "is a directory")
            return int(details.get("size") or 0)
        if Path(uri).is_dir():
            raise MediaError(uri, "missing file", "is a directory")
        return os.path.getsize(uri)
    except FileNotFoundError as exc:
        raise MediaError(uri, "missing file", "no such file") from exc


def _open_container(uri: str, handle: IO[bytes] | None) -> Any:
    try:
        return av.open(handle if handle is not None else uri, mode="r", metadata_errors="replace")
    except (av.FFmpegError, ValueError) as exc:
        reason = "truncated" if _looks_cut(uri) else "undecodable"
        raise MediaError(uri, reason, _first_line(exc)) from exc


def _looks_cut(uri: str) -> bool:
    """True when the bytes start like a known container: then a failed open means a cut file."""
    with _open_bytes(uri) as handle:
        head = handle.read(64)
    if head[4:8] in _MP4_BOXES:
        return _mp4_cut(uri)
    return any(head[at : at + len(sig)] == sig for at, sig in _SIGNATURES)


def _mp4_cut(uri: str) -> bool:
    """An MP4/MOV whose top-level boxes run past the end of the file, or that lacks `moov`."""
    with _open_bytes(uri) as handle:
        if handle.read(8)[4:8] not in _MP4_BOXES:
            return False
        return _mp4_boxes_cut(handle)


def _mp4_boxes_cut(handle: IO[bytes]) -> bool:
    handle.seek(0, os.SEEK_END)
    total = handle.tell()
    offset, seen_moov = 0, False
    while offset + 8 <= total:
        handle.seek(offset)
        header = handle.read(16)
        size = int.from_bytes(header[:4], "big")
        if size == 1 and len(header) == 16:
            size = int.from_bytes(header[8:16], "big")
        elif size == 0:
            size = total - offset
        if size < 8:
            return False
        seen_moov = seen_moov or header[4:8] == b"moov"
        offset += size
    return offset > total or not seen_moov


def _declared_seconds(container: Any, stream: Any) -> float:
    """The video stream's length as the container declares it, 0 when it does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    hours, minutes, seconds = (stream.metadata.get("DURATION", "").split(":") + ["", ""])[:3]
    if hours.isdigit() and minutes.isdigit() and seconds.replace(".", "", 1).isdigit():
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return 0.0


def _frame_rate(stream: Any, pts: list[int]) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    if len(pts) > 1 and stream.time_base:
        span = (pts[-1] - pts[0]) * Fraction(stream.time_base)
        if span > 0:
            return float((len(pts) - 1) / span)
    return 1.0


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled down, aspect kept, so the longer side is at most `max_side`
    (sides rounded to even, at least 2); unchanged when it already fits or `max_side` is None."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def _open_decord(path: str, frames: int, size: tuple[int, int] | None = None) -> Any:
    """A decord reader when it agrees with the PyAV index, else None (PyAV then decodes);
    scaling its frames to `size` (height, width) when given."""
    import decord

    scale = {} if size is None else {"height": size[0], "width": size[1]}
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **scale)
    except (decord.DECORDError, RuntimeError):
        return None
    return reader if len(reader) == frames else None


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    height, width = size
    shrink = height <= frame.shape[0] and width <= frame.shape[1]
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=method)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
