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

import functools
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


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centred pixel coordinates in frame widths (x, y as (H, W)), the moments basis
    [1, x, y, x^2, y^2, xy] (HW, 6) the similarity fit sums over, and the centre weighting
    (H, W) of one analysis size; read-only, shared."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs = (xs - (w - 1) / 2) / w
    ys = (ys - (h - 1) / 2) / w
    x, y = xs.ravel(), ys.ravel()
    basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], 1)
    centre = np.exp(-(xs**2) / (2 * CENTRE_SIGMA**2)).astype(np.float32)
    for array in (xs, ys, basis, centre):
        array.setflags(write=False)
    return xs, ys, basis, centre


def camera_fits(flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust similarity fits of a stack of flow fields (P, H, W, 2) at once: per field
    (tx, ty, scale, rotation) in frame widths (P, 4), and the residual flow (P, H, W, 2) the
    camera does not explain.

    The model is u = tx + s x - r y, v = ty + s y + r x, fitted by iteratively reweighted least
    squares with a Huber weight on the residual's robust scale (so a moving object does not
    drag the camera estimate). The 4x4 normal equations are built from weighted moments of the
    pixel grid, one small matrix product per round for all fields, not a (2HW, 4) design per
    field.
    """
    pairs, h, w = flows.shape[:3]
    _, _, basis, _ = _grid(h, w)
    x, y = basis[:, 1], basis[:, 2]
    n = h * w
    fu = flows[..., 0].reshape(pairs, n).astype(np.float32) / w
    fv = flows[..., 1].reshape(pairs, n).astype(np.float32) / w
    wu = np.ones_like(fu)
    wv = np.ones_like(fv)
    ru, rv = fu, fv
    params = np.zeros((pairs, 4), np.float32)
    for _ in range(IRLS_ROUNDS):
        mu, mv = wu @ basis, wv @ basis  # weighted moments [1, x, y, xx, yy, xy] per field
        bu, bv = (wu * fu) @ basis[:, :3], (wv * fv) @ basis[:, :3]
        normal = np.zeros((pairs, 4, 4), np.float32)
        normal[:, 0, 0], normal[:, 1, 1] = mu[:, 0], mv[:, 0]
        normal[:, 0, 2], normal[:, 0, 3] = mu[:, 1], -mu[:, 2]
        normal[:, 1, 2], normal[:, 1, 3] = mv[:, 2], mv[:, 1]
        normal[:, 2, 2] = mu[:, 3] + mv[:, 4]
        normal[:, 3, 3] = mu[:, 4] + mv[:, 3]
        normal[:, 2, 3] = mv[:, 5] - mu[:, 5]
        normal = np.triu(normal) + np.swapaxes(np.triu(normal, 1), 1, 2)
        normal += 1e-6 * np.eye(4, dtype=np.float32)
        rhs = np.stack([bu[:, 0], bv[:, 0], bu[:, 1] + bv[:, 2], bv[:, 1] - bu[:, 2]], 1)
        params = np.linalg.solve(normal, rhs[..., None])[..., 0].astype(np.float32)
        tx, ty, sc, rot = (params[:, i : i + 1] for i in range(4))
        ru = fu - (tx + sc * x - rot * y)
        rv = fv - (ty + sc * y + rot * x)
        both = np.abs(np.concatenate([ru, rv], 1))
        scale = 1.4826 * np.median(both, axis=1, keepdims=True) + 1e-4
        weight = 1.0 / np.maximum(1.0, both / (1.5 * scale))
        wu, wv = weight[:, :n], weight[:, n:]
    return params, np.stack([ru, rv], 2).reshape(pairs, h, w, 2).astype(np.float32)


def camera_fit(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`camera_fits` of one flow field (H, W, 2)."""
    params, residual = camera_fits(np.asarray(flow)[None])
    return params[0], residual[0]


def _object_tracks(residual: np.ndarray) -> np.ndarray:
    """Centre-weighted residual motion of each step (P, H, W, 2) -> (P, 7): energy, weight,
    centroid x / y, velocity u / v and expansion (towards / away)."""
    pairs, h, w = residual.shape[:3]
    xs, ys, _, centre = _grid(h, w)
    energy = np.linalg.norm(residual, axis=3)
    weight = energy * centre
    total = weight.sum((1, 2)) + 1e-6

    def mean(values: np.ndarray) -> np.ndarray:
        return (weight * values).sum((1, 2)) / total

    cx, cy = mean(xs), mean(ys)
    u, v = mean(residual[..., 0]), mean(residual[..., 1])
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    radial = (residual[..., 0] * dx + residual[..., 1] * dy) / np.sqrt(dx * dx + dy * dy + 1e-3)
    expansion = mean(radial)
    track = np.stack([energy.mean((1, 2)), total / (h * w), cx, cy, u, v, expansion], 1)
    return track.astype(np.float64)


def _sign_changes(series: np.ndarray) -> float:
    signs = np.sign(series)
    return float(np.mean(signs[1:] != signs[:-1])) if len(series) > 1 else 0.0


def motion_descriptor(frames: np.ndarray) -> np.ndarray:
    """The fixed-length motion descriptor of a clip's frames (T >= 2), float32."""
    import cv2

    grey = _grey_frames(np.asarray(frames))
    if len(grey) < 2:
        raise MotionError(f"motion needs at least 2 frames, got {len(grey)}")
    flows = np.stack(
        [
            cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
            for a, b in zip(grey, grey[1:], strict=False)
        ]
    )
    camera, residual = camera_fits(flows)
    track = _object_tracks(residual)
    features: list[float] = []
    for series in (camera, track):
        half = max(1, len(series) // 2)
        trend = series[:half].mean(0) - series[half:].mean(0) if len(series) > 1 else series[0] * 0
        features += list(series.mean(0)) + list(np.abs(series).mean(0)) + list(series.std(0))
        features += list(trend)
    features += [_sign_changes(track[:, 5]), _sign_changes(track[:, 4])]
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
