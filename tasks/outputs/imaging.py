"""Frames into pictures: checked frame arrays, letterboxing, resizing, tiles, strips and sheets.

Everything here works on (T,H,W,3) or (H,W,3) uint8 RGB arrays and returns new arrays; the
storyboard, the poster frame / contact sheet and the review proxies are built from these.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from story.tasks.outputs.errors import AssemblyError

SEPARATOR = 2
STRIP_FRAMES = 8
STRIP_GAP = 2
RESAMPLING = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "area": cv2.INTER_AREA,
}


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


def resize(frame: np.ndarray, size: tuple[int, int], resampling: str = "area") -> np.ndarray:
    """One frame scaled to (H, W) with a named resampling filter (see RESAMPLING)."""
    if resampling not in RESAMPLING:
        raise AssemblyError(f"resampling {resampling!r}: one of {', '.join(RESAMPLING)}")
    if frame.shape[:2] == size:
        return frame
    height, width = size
    return cv2.resize(frame, (width, height), interpolation=RESAMPLING[resampling])


def size_for_width(shape: Sequence[int], width: int) -> tuple[int, int]:
    """The even (H, W) a frame of `shape` (H, W, ...) takes at `width`, keeping its aspect."""
    if width < 2:
        raise AssemblyError(f"width must be at least 2 pixels, got {width}")
    height = max(2, round(shape[0] * width / shape[1]))
    return height + height % 2, width + width % 2


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale a frame into (H, W) keeping its aspect ratio; the rest is black."""
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


def colorize_structure(structure: np.ndarray) -> np.ndarray:
    """(T,H,W) guide in [-1, 1] -> (T,H,W,3) uint8 RGB with the inferno colour map."""
    values = np.asarray(structure, dtype=np.float32)
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 3 or min(values.shape) < 1:
        raise AssemblyError(f"structure: expected (T,H,W) values, got shape {values.shape}")
    scaled = np.nan_to_num((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.stack(
        [
            cv2.cvtColor(cv2.applyColorMap(f, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
            for f in scaled
        ]
    )


def film_strip(frames: np.ndarray, count: int = STRIP_FRAMES) -> np.ndarray:
    """Up to `count` evenly spaced frames side by side, separated by white gaps."""
    frames = check_frames(frames, "film strip")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    height, width = frames.shape[1:3]
    strip = np.full(
        (height, len(picks) * width + (len(picks) - 1) * STRIP_GAP, 3), 255, dtype=np.uint8
    )
    for slot, index in enumerate(picks):
        x = slot * (width + STRIP_GAP)
        strip[:, x : x + width] = frames[index]
    return strip


def poster_index(frames: np.ndarray) -> int:
    """The frame that stands for a clip: the middle one (past any fade-in, before any fade-out)."""
    return (len(check_frames(frames, "poster")) - 1) // 2


def png_bytes(image: np.ndarray) -> bytes:
    """An (H,W,3) uint8 picture as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
