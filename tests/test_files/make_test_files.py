"""Write the tiny media files the media, shot and ingest tests read (deterministic, a few KB each).

Run from the repository root: `python tests/test_files/make_test_files.py [OUT_DIR]`.
Every file is rebuilt from a seed; the same PyAV build writes the same bytes.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 64
FPS = 8
CUT_FRAMES = (16, 32)
CUTS_TOTAL = 48


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return ys, xs


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled random grid in [0, 1]: a soft, natural-looking texture."""
    coarse = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    ys, xs = _grid(height, width)
    gy, gx = ys / cell, xs / cell
    y0, x0 = gy.astype(int), gx.astype(int)
    fy, fx = gy - y0, gx - x0
    top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
    bottom = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def cut_frames() -> np.ndarray:
    """48 frames in three visually distinct 16-frame shots, each with its own motion."""
    ys, xs = _grid(SIZE, SIZE)
    frames = np.zeros((CUTS_TOTAL, SIZE, SIZE, 3), np.float32)
    for t in range(CUTS_TOTAL):
        if t < CUT_FRAMES[0]:
            sky = np.stack([0.2 + 0.2 * ys / SIZE, 0.4 + 0.3 * ys / SIZE, 0.9 + 0 * ys], -1)
            disc = ((xs - 10 - 2.5 * t) ** 2 + (ys - 36) ** 2) < 64
            sky[disc] = (0.9, 0.15, 0.1)
            frames[t] = sky
        elif t < CUT_FRAMES[1]:
            u = t - CUT_FRAMES[0]
            checker = ((((xs + 1.5 * u) // 8) + (ys // 8)) % 2).astype(np.float32)
            frames[t] = np.stack([0.1 + 0.2 * checker, 0.4 + 0.5 * checker, 0.1 + 0 * checker], -1)
        else:
            u = t - CUT_FRAMES[1]
            stripes = (np.sin((ys + 2 * u) / 3.0) > 0).astype(np.float32)
            frames[t] = np.stack(
                [0.15 + 0.8 * stripes, 0.15 + 0.7 * stripes, 0.1 + 0 * stripes], -1
            )
    return (frames * 255).round().astype(np.uint8)


def pan_frames(count: int = 48) -> np.ndarray:
    """One continuous shot: a slow pan and zoom over a textured landscape with a moving ball."""
    rng = np.random.default_rng(7)
    world_h, world_w = 96, 224
    texture = _smooth_noise(rng, world_h, world_w, 12)
    wy, _ = _grid(world_h, world_w)
    horizon = wy < world_h * 0.4
    world = np.empty((world_h, world_w, 3), np.float32)
    world[..., 0] = np.where(horizon, 0.45 + 0.1 * texture, 0.30 + 0.35 * texture)
    world[..., 1] = np.where(horizon, 0.60 + 0.1 * texture, 0.45 + 0.30 * texture)
    world[..., 2] = np.where(horizon, 0.90, 0.15 + 0.10 * texture)
    ys, xs = _grid(SIZE, SIZE)
    frames = np.empty((count, SIZE, SIZE, 3), np.float32)
    for t in range(count):
        zoom = 1.0 - 0.004 * t
        x = np.clip(xs * zoom + 2.0 * t + 8, 0, world_w - 1).astype(int)
        y = np.clip(ys * zoom + 16 + 0.2 * t, 0, world_h - 1).astype(int)
        frame = world[y, x].copy()
        ball = ((xs - 20 - 0.8 * t) ** 2 + (ys - 44 + 4 * np.sin(t / 4)) ** 2) < 30
        frame[ball] = (0.85, 0.2, 0.6)
        frames[t] = frame
    return (frames * 255).round().astype(np.uint8)


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    """A colour gradient drifting sideways; odd sizes included."""
    ys, xs = _grid(height, width)
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = ((xs + 3 * t) * 255 / (width + 3 * count)).astype(np.uint8)
        frames[t, ..., 1] = (ys * 255 / height).astype(np.uint8)
        frames[t, ..., 2] = np.uint8((40 + 9 * t) % 256)
    return frames


def block_frames(count: int, height: int, width: int, block: int = 240) -> np.ndarray:
    """Large flat colour blocks (cheap to encode at any size) that shift by one block per frame."""
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, (height // block, width // block + count, 3), dtype=np.uint8)
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        tile = coarse[:, t : t + width // block]
        frames[t] = np.repeat(np.repeat(tile, block, axis=0), block, axis=1)
    return frames


def write_video(
    path: Path,
    frames: np.ndarray,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames single-threaded so the output bytes are reproducible."""
    muxer = {"fflags": "+bitexact", **(container_options or {})}
    with av.open(str(path), "w", options=muxer) as container:
        stream = container.add_stream(codec, rate=Fraction(FPS), options=options or {})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = 1
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_variable_rate(path: Path, count: int = 24) -> None:
    """Frames 50 ms apart with a 250 ms gap before every third one; grey level rises each frame."""
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS), options={"qp": "20"})
        stream.height = stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.thread_count = 1
        stamp = 0
        for index in range(count):
            array = np.full((SIZE, SIZE, 3), index * 10, np.uint8)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = stamp, Fraction(1, 1000)
            stamp += 50 if index % 3 else 250
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_audio_only(path: Path, seconds: float = 0.5, rate: int = 8000) -> None:
    """An AAC track and no video stream."""
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        t = np.arange(int(seconds * rate), dtype=np.float32) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        step = 1024
        for offset in range(0, tone.size, step):
            chunk = tone[None, offset : offset + step]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = offset
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main(out: Path = HERE) -> None:
    """Write every test file into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    # Constant QP: x264's CRF look-ahead does not give the same bytes on every run.
    h264 = {"qp": "20", "g": "24"}
    write_video(out / "cuts.mp4", cut_frames(), options=h264)
    write_video(out / "pan.mp4", pan_frames(), options=h264)
    write_video(out / "single_frame.mp4", gradient_frames(1, SIZE, SIZE), options=h264)
    write_video(out / "odd.mp4", gradient_frames(12, 47, 63), pix_fmt="yuv444p", options=h264)
    write_video(out / "large.mp4", block_frames(4, 2160, 3840), options=h264)
    write_variable_rate(out / "vfr.mp4")
    write_video(out / "vp9.webm", gradient_frames(16, SIZE, SIZE), "libvpx-vp9", "yuv420p")
    write_video(out / "mjpeg.avi", gradient_frames(16, SIZE, SIZE), "mjpeg", "yuvj420p")
    write_video(
        out / "faststart.mp4",
        cut_frames(),
        options=h264,
        container_options={"movflags": "faststart"},
    )
    write_audio_only(out / "audio_only.mp4")

    whole = (out / "cuts.mp4").read_bytes()
    (out / "truncated.mp4").write_bytes(whole[: int(len(whole) * 0.4)])
    moov_first = (out / "faststart.mp4").read_bytes()
    (out / "truncated_faststart.mp4").write_bytes(moov_first[: int(len(moov_first) * 0.6)])
    (out / "faststart.mp4").unlink()
    (out / "zero.mp4").write_bytes(b"")
    (out / "random.mp4").write_bytes(np.random.default_rng(11).bytes(4096))
    (out / "text.mp4").write_text("This is a caption file, not a video.\n" * 20)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
