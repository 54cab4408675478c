"""What a clip shows of motion, measured from its frames at ingest: camera move and object motion.

Optical flow (OpenCV Farneback, on frames scaled to ANALYSIS_WIDTH) between consecutive sampled
frames is fitted, robustly, with a camera model (translation = pan, scale = zoom, rotation);
what the camera does not explain is the objects' own motion. Weighted towards the centre of the
frame (where the main object of a shot usually is), that residual gives an object track:
centroid, velocity, expansion (towards / away), and how often its vertical and horizontal
velocity change sign (bouncing, circling). Summaries over time form a fixed-length descriptor;
a softmax classifier trained on the miniature world's train split (`MotionClassifier`,
`checkpoints/motion-tiny`) turns it into probabilities of each motion and camera move, stored
per clip so ranking reads them without decoding anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.errors import StoryError

MOTION_LABELS = (
    "static",
    "sideways_left",
    "sideways_right",
    "towards",
    "away",
    "bouncing",
    "circling",
)
CAMERA_LABELS = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out")
TINY_CLASSIFIER = "motion-tiny/classifier.json"
ANALYSIS_WIDTH = 64
CENTRE_SIGMA = 0.3
IRLS_ROUNDS = 3


class MotionError(StoryError, ValueError):
    """Frames or a motion classifier file cannot be used."""


def _grey_frames(frames: np.ndarray) -> list[np.ndarray]:
    import cv2  # here, not at the top: search imports this module for its labels only

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MotionError(f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    width = ANALYSIS_WIDTH
    height = max(8, round(h * width / w / 2) * 2)
    out = []
    for frame in frames:
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if (h, w) != (height, width):
            grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        out.append(grey)
    return out


def camera_fit(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust similarity fit of a flow field: (tx, ty, scale, rotation) in frame widths, and
    the residual flow (H, W, 2) the camera does not explain."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x = ((xs - (w - 1) / 2) / w).ravel()
    y = ((ys - (h - 1) / 2) / w).ravel()
    one, zero = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([one, zero, x, -y], 1), np.stack([zero, one, y, x], 1)])
    target = np.concatenate([flow[..., 0].ravel(), flow[..., 1].ravel()]) / w
    weight = np.ones(len(target), np.float32)
    params = np.zeros(4, np.float32)
    for _ in range(IRLS_ROUNDS):
        weighted = design * weight[:, None]
        params = np.linalg.solve(weighted.T @ design + 1e-6 * np.eye(4), weighted.T @ target)
        residual = target - design @ params
        scale = 1.4826 * float(np.median(np.abs(residual))) + 1e-4
        weight = 1.0 / np.maximum(1.0, np.abs(residual) / (1.5 * scale))
    residual = target - design @ params
    n = len(x)
    return params.astype(np.float32), np.stack([residual[:n], residual[n:]], 1).reshape(h, w, 2)


def _object_track(residual: np.ndarray) -> list[float]:
    """Centre-weighted residual motion: energy, centroid, velocity and expansion of one step."""
    h, w = residual.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs = (xs - (w - 1) / 2) / w
    ys = (ys - (h - 1) / 2) / w
    energy = np.linalg.norm(residual, axis=2)
    weight = energy * np.exp(-(xs**2) / (2 * CENTRE_SIGMA**2))
    total = float(weight.sum()) + 1e-6
    cx = float((weight * xs).sum()) / total
    cy = float((weight * ys).sum()) / total
    u = float((weight * residual[..., 0]).sum()) / total
    v = float((weight * residual[..., 1]).sum()) / total
    dx, dy = xs - cx, ys - cy
    radial = (residual[..., 0] * dx + residual[..., 1] * dy) / np.sqrt(dx * dx + dy * dy + 1e-3)
    expansion = float((weight * radial).sum()) / total
    return [float(energy.mean()), total / (h * w), cx, cy, u, v, expansion]


def _sign_changes(series: np.ndarray) -> float:
    signs = np.sign(series)
    return float(np.mean(signs[1:] != signs[:-1])) if len(series) > 1 else 0.0


def motion_descriptor(frames: np.ndarray) -> np.ndarray:
    """The fixed-length motion descriptor of a clip's frames (T >= 2), float32."""
    import cv2

    grey = _grey_frames(np.asarray(frames))
    if len(grey) < 2:
        raise MotionError(f"motion needs at least 2 frames, got {len(grey)}")
    camera, track = [], []
    for a, b in zip(grey, grey[1:], strict=False):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        params, residual = camera_fit(flow)
        camera.append(params)
        track.append(_object_track(residual))
    features: list[float] = []
    for series in (np.asarray(camera), np.asarray(track)):
        half = max(1, len(series) // 2)
        trend = series[:half].mean(0) - series[half:].mean(0) if len(series) > 1 else series[0] * 0
        features += list(series.mean(0)) + list(np.abs(series).mean(0)) + list(series.std(0))
        features += list(trend)
    track_array = np.asarray(track)
    features += [_sign_changes(track_array[:, 5]), _sign_changes(track_array[:, 4])]
    return np.asarray(features, dtype=np.float32)


@dataclass
class MotionClassifier:
    """A small MLP (standardise, one tanh layer, two softmax heads) from the descriptor to
    motion and camera probabilities; `hidden` empty means plain softmax regression."""

    mean: np.ndarray
    scale: np.ndarray
    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    motion_weights: np.ndarray
    motion_bias: np.ndarray
    camera_weights: np.ndarray
    camera_bias: np.ndarray
    notes: dict[str, Any]

    ARRAYS = (
        "mean",
        "scale",
        "hidden_weights",
        "hidden_bias",
        "motion_weights",
        "motion_bias",
        "camera_weights",
        "camera_bias",
    )

    def features(self, descriptors: np.ndarray) -> np.ndarray:
        z = (np.asarray(descriptors, np.float32) - self.mean) / self.scale
        if self.hidden_weights.size == 0:
            return z
        return np.tanh(z @ self.hidden_weights + self.hidden_bias)

    def predict(self, descriptor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(motion probabilities over MOTION_LABELS, camera probabilities over CAMERA_LABELS)."""
        h = self.features(descriptor)
        return (
            _softmax(h @ self.motion_weights + self.motion_bias),
            _softmax(h @ self.camera_weights + self.camera_bias),
        )

    def save(self, path: str | Path) -> None:
        data = {"motion_labels": list(MOTION_LABELS), "camera_labels": list(CAMERA_LABELS)}
        data.update({k: getattr(self, k).tolist() for k in self.ARRAYS})
        data["notes"] = self.notes
        Path(path).write_text(json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> MotionClassifier:
        file = Path(path)
        try:
            data = json.loads(file.read_text())
            if data["motion_labels"] != list(MOTION_LABELS) or data["camera_labels"] != list(
                CAMERA_LABELS
            ):
                raise MotionError(f"{file}: labels differ from this version's")
            arrays = {k: np.asarray(data[k], np.float32) for k in cls.ARRAYS}
        except FileNotFoundError as exc:
            raise MotionError(f"{file}: motion classifier not found") from exc
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MotionError(f"{file}: not a motion classifier file: {exc}") from exc
        return cls(**arrays, notes=data.get("notes", {}))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)


def load_motion_classifier(settings: Any) -> MotionClassifier | None:
    """The configured classifier: `tiny` (bundled), a JSON path, or None for `none`.

    The bundled one missing (a checkout without checkpoints) leaves the probabilities empty:
    ranking then reads motion from captions and vectors only.
    """
    name = str(getattr(settings, "motion_model", "tiny") or "none")
    if name == "none":
        return None
    if name == "tiny":
        path = Path(settings.checkpoints) / TINY_CLASSIFIER
        return MotionClassifier.load(path) if path.is_file() else None
    return MotionClassifier.load(name)


def clip_motion(frames: np.ndarray, classifier: MotionClassifier | None) -> dict[str, Any]:
    """The motion columns of one clip's table row."""
    descriptor = motion_descriptor(frames)
    row: dict[str, Any] = {"motion_features": descriptor.tolist()}
    if classifier is not None:
        motion, camera = classifier.predict(descriptor)
        row.update(
            motion_probs=motion.tolist(),
            camera_probs=camera.tolist(),
            motion_label=MOTION_LABELS[int(motion.argmax())],
            camera_label=CAMERA_LABELS[int(camera.argmax())],
        )
    return row
