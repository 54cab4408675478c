"""Temporal quality by warp error: frame t+1 warped back onto frame t along the optical flow.

A plain frame difference counts motion as flicker; the warp error only counts what the flow
cannot explain (flicker, popping, seams). A frozen clip has no warp error but no motion either,
so a clip is always read with its motion magnitude too, and both are compared with the real
clip's: a render is temporally right when it moves like the real clip with no more warp error.
Flow is OpenCV's Farneback (dense, classical: nothing learned that a generator could game).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLOW_SIDE = 128


@dataclass(frozen=True)
class PairMotion:
    """Per consecutive frame pair: warp error (mean |RGB| / 255) and flow magnitude (pixels per
    frame as a fraction of the frame width)."""

    warp_error: np.ndarray
    motion: np.ndarray


def _flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Farneback flow from `prev` to `nxt` (grey uint8). Small frames are upsampled until the
    short side reaches FLOW_SIDE first: Farneback's polynomial fit needs more than the few
    pixels an object spans at 32x32."""
    h, w = prev.shape
    scale = max(1, int(np.ceil(FLOW_SIDE / min(h, w))))
    if scale > 1:
        size = (w * scale, h * scale)
        prev = cv2.resize(prev, size, interpolation=cv2.INTER_CUBIC)
        nxt = cv2.resize(nxt, size, interpolation=cv2.INTER_CUBIC)
    flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 4, 15, 5, 7, 1.5, 0)
    if scale > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / scale
    return flow


def pair_flows(frames: np.ndarray) -> list[np.ndarray]:
    """Farneback flow (H, W, 2) from each frame of a (T, H, W, 3) uint8 clip to the next."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"need (T >= 2, H, W, 3) frames, got {frames.shape}")
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    return [_flow(grey[t], grey[t + 1]) for t in range(len(frames) - 1)]


def pair_motion(frames: np.ndarray) -> PairMotion:
    """Warp error and motion of every consecutive pair of a (T, H, W, 3) uint8 clip."""
    flows = pair_flows(frames)
    h, w = frames.shape[1:3]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    errors, motions = [], []
    for t, flow in enumerate(flows):
        map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
        warped = cv2.remap(
            np.ascontiguousarray(frames[t + 1]), map_x, map_y, cv2.INTER_LINEAR
        ).astype(np.float32)
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        diff = np.abs(frames[t].astype(np.float32) - warped).mean(-1)
        errors.append(float(diff[inside].mean() / 255.0) if inside.any() else 0.0)
        motions.append(float(np.linalg.norm(flow, axis=-1).mean() / w))
    return PairMotion(np.array(errors), np.array(motions))


def clip_temporal(frames: np.ndarray) -> dict[str, float]:
    """Mean warp error and mean motion of a clip."""
    pairs = pair_motion(frames)
    return {"warp_error": float(pairs.warp_error.mean()), "motion": float(pairs.motion.mean())}


def seam_temporal(frames: np.ndarray, seams: list[int]) -> dict[str, float]:
    """Warp error and motion at clip seams (the pair ending at each frame in `seams`) vs within.

    A seam is the first frame of a new window; the pair (seam - 1, seam) crosses it.
    """
    pairs = pair_motion(frames)
    at = [s - 1 for s in seams if 0 < s < len(frames)]
    if not at:
        raise ValueError(f"no seam of {seams} falls inside a clip of {len(frames)} frames")
    within = [i for i in range(len(pairs.warp_error)) if i not in at]
    return {
        "seam_warp_error": float(pairs.warp_error[at].mean()),
        "within_warp_error": float(pairs.warp_error[within].mean()),
        "seam_motion": float(pairs.motion[at].mean()),
        "within_motion": float(pairs.motion[within].mean()),
    }
