"""Structure maps besides depth: edges (Canny) and motion (Farneback optical flow).

Both follow the depth estimators' interface (`model_id`, `estimate(frames, size=, normalize=)`)
and convention: float32 in [-1, 1], normalised per frame or over the clip, resized to the
synthesis size. Edges are (T, H, W); motion is (T, H, W, 2), the flow (dx, dy) into each frame
divided by the largest flow magnitude, so direction and relative speed both survive.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from story.models.depth import check_frames, load_depth_estimator, resolve_depth_model_id
from story.models.structure_norm import normalize_structure
from story.tasks.structure.depth_store import StructureEstimator

STRUCTURE_KINDS = ("depth", "edges", "motion")
FLOW_SHORT_SIDE = 128


def _target(frames: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    target = tuple(size) if size is not None else tuple(frames.shape[1:3])
    if len(target) != 2 or min(target) < 1:
        raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
    return int(target[0]), int(target[1])


def _check_mode(normalize: str) -> None:
    if normalize not in ("frame", "clip"):
        raise ValueError(f"normalize must be 'frame' or 'clip', got {normalize!r}")


class EdgeStructure:
    """Canny edges with thresholds from each frame's median, area-resized to an edge density."""

    model_id = "edges-canny-v1"

    def __init__(self, sigma: float = 0.33) -> None:
        self.sigma = sigma

    def _edges(self, frame: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        median = float(np.median(gray))
        low = int(max(0.0, (1.0 - self.sigma) * median))
        high = int(min(255.0, (1.0 + self.sigma) * median))
        return cv2.Canny(gray, low, max(high, low + 1)).astype(np.float32) / 255.0

    def estimate(
        self, frames: np.ndarray, *, size: tuple[int, int] | None = None, normalize: str = "frame"
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, h, w) edge density in [-1, 1] (edges high)."""
        check_frames(frames)
        _check_mode(normalize)
        height, width = _target(frames, size)
        maps = np.stack(
            [
                cv2.resize(self._edges(f), (width, height), interpolation=cv2.INTER_AREA)
                for f in frames
            ]
        )
        return normalize_structure(torch.from_numpy(maps), mode=normalize).numpy()


class MotionStructure:
    """Dense Farneback flow into each sampled frame (the first frame takes the flow out of it)."""

    model_id = "motion-farneback-v1"

    def _gray(self, frames: np.ndarray) -> np.ndarray:
        height, width = frames.shape[1:3]
        scale = min(1.0, FLOW_SHORT_SIDE / min(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.stack(
            [
                cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
                for f in frames
            ]
        )

    def estimate(
        self, frames: np.ndarray, *, size: tuple[int, int] | None = None, normalize: str = "frame"
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, h, w, 2) flow (dx, dy) over its max magnitude, in [-1, 1]."""
        check_frames(frames)
        _check_mode(normalize)
        height, width = _target(frames, size)
        gray = self._gray(frames)
        flows = [
            cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            for t in range(len(gray) - 1)
        ]
        if not flows:
            flows = [np.zeros((*gray.shape[1:], 2), np.float32)]
        per_frame = [flows[0], *flows]
        resized = np.stack(
            [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in per_frame]
        ).astype(np.float32)
        magnitude = np.linalg.norm(resized, axis=-1)
        axes = (1, 2) if normalize == "frame" else (0, 1, 2)
        peak = np.maximum(magnitude.max(axis=axes, keepdims=True), 1e-6)
        return np.clip(resized / peak[..., None], -1.0, 1.0).astype(np.float32)


def load_structure_estimator(
    spec: str, checkpoints: str | Path | None = None, device: str = "auto"
) -> StructureEstimator:
    """`edges`, `motion`, or a depth model spec (`tiny` or a local DPT / tiny folder)."""
    if spec == "edges":
        return EdgeStructure()
    if spec == "motion":
        return MotionStructure()
    return load_depth_estimator(spec, checkpoints, device=device)


def resolve_structure_model_id(spec: str, checkpoints: str | Path | None = None) -> str:
    """The model id `load_structure_estimator(spec)` reports, without loading any weights."""
    if spec == "edges":
        return EdgeStructure.model_id
    if spec == "motion":
        return MotionStructure.model_id
    return resolve_depth_model_id(spec, checkpoints)
