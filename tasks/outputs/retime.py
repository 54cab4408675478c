"""Retiming: model frames resampled at fractional positions, by hold, blend or optical flow.

- hold: each delivered frame shows the model frame current at its time (animation "on threes"
  at 8 -> 24 fps); never invents pixels.
- blend: a cross-fade of the two neighbouring model frames (ghosts on motion).
- flow: both neighbours warped to the in-between time along dense optical flow (OpenCV DIS,
  no learned weights) and blended; small frames are upscaled for the flow estimate.
Which one a render uses is its delivery's `retime` (chosen by measurement, docs/editorial.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import check_frames

FLOW_MIN_SIDE = 128
"""Frames smaller than this are upscaled before the flow estimate (DIS needs a few patches)."""
_EPS = 1e-6


def _split(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = np.floor(positions + _EPS).astype(int)
    return base, np.clip(positions - base, 0.0, 1.0)


def hold(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The model frame current at each position."""
    base, _ = _split(positions)
    return frames[np.clip(base, 0, len(frames) - 1)]


def blend(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A linear cross-fade of the two model frames around each position."""
    base, t = _split(positions)
    a = frames[np.clip(base, 0, len(frames) - 1)].astype(np.float32)
    b = frames[np.clip(base + 1, 0, len(frames) - 1)].astype(np.float32)
    mixed = a + (b - a) * t[:, None, None, None].astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


class FlowPair:
    """Dense optical flow both ways between two frames, for warping to any time between them."""

    def __init__(self, first: np.ndarray, second: np.ndarray) -> None:
        self.first, self.second = first, second
        self.forward = _flow(first, second)
        self.backward = _flow(second, first)
        height, width = first.shape[:2]
        self._grid = np.stack(
            np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)),
            axis=-1,
        )

    def _warp(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        where = self._grid + flow
        return cv2.remap(
            image.astype(np.float32),
            where[..., 0],
            where[..., 1],
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def at(self, t: float) -> np.ndarray:
        """The frame at time t in (0, 1) between the two (flows at t as in Super SloMo, eq. 4)."""
        f01, f10 = self.forward, self.backward
        to_first = -(1.0 - t) * t * f01 + t * t * f10
        to_second = (1.0 - t) ** 2 * f01 - t * (1.0 - t) * f10
        mixed = (1.0 - t) * self._warp(self.first, to_first) + t * self._warp(
            self.second, to_second
        )
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H,W,2) flow from `source` to `target`, estimated at >= FLOW_MIN_SIDE pixels."""
    height, width = source.shape[:2]
    scale = max(1, int(np.ceil(FLOW_MIN_SIDE / min(height, width))))
    size = (width * scale, height * scale)

    def grey(image: np.ndarray) -> np.ndarray:
        big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC) if scale > 1 else image
        return cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)

    dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    flow = dis.calc(grey(source), grey(target), None)
    if scale > 1:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / scale
    return flow.astype(np.float32)


def flow_interpolate(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Frames at each position: model frames where it is whole, flow-warped in between."""
    base, t = _split(positions)
    pairs: dict[int, FlowPair] = {}
    out = np.empty((len(positions), *frames.shape[1:]), np.uint8)
    last = len(frames) - 1
    for n, (k, frac) in enumerate(zip(base, t, strict=True)):
        if frac < _EPS or k >= last:
            out[n] = frames[min(k, last)]
            continue
        if k not in pairs:
            pairs[k] = FlowPair(frames[k], frames[k + 1])
        out[n] = pairs[k].at(float(frac))
    return out


METHODS = {"hold": hold, "blend": blend, "flow": flow_interpolate}


def retime(frames: np.ndarray, positions: np.ndarray, method: str) -> np.ndarray:
    """Model frames (T,H,W,3) resampled at fractional frame `positions` with `method`."""
    frames = check_frames(frames, "retime")
    if method not in METHODS:
        raise AssemblyError(f"retime method {method!r}: one of {', '.join(METHODS)}")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 1 or not len(positions):
        raise AssemblyError("retime: positions must be a non-empty list of frame positions")
    return METHODS[method](frames, np.clip(positions, 0.0, len(frames) - 1))
