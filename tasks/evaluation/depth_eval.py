"""Depth accuracy as MiDaS reports it: align disparity by scale and shift, then compare depths.

A prediction is only defined up to scale and shift in disparity, so each frame's prediction is
first fitted to the true disparity by least squares; the aligned disparity is capped at the
farthest true depth, inverted to depth, and scored with AbsRel and delta < 1.25.
"""

from __future__ import annotations

import numpy as np

MIN_DEPTH = 1e-3


def align_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Least-squares `s * pred + t` fit to `target` over `mask`, per frame of (T, H, W) maps."""
    aligned = np.empty_like(target, dtype=np.float64)
    for i in range(pred.shape[0]):
        p = pred[i][mask[i]].astype(np.float64)
        g = target[i][mask[i]].astype(np.float64)
        design = np.stack([p, np.ones_like(p)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, g, rcond=None)
        aligned[i] = scale * pred[i] + shift
    return aligned


def depth_metrics(
    pred_disparity: np.ndarray, true_depth: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, float]:
    """AbsRel and delta<1.25 of (T, H, W) disparity-like predictions against metric depth."""
    if pred_disparity.shape != true_depth.shape:
        raise ValueError(
            f"prediction {pred_disparity.shape} and depth {true_depth.shape} differ in shape"
        )
    depth = true_depth.astype(np.float64)
    mask = (depth > MIN_DEPTH) if valid is None else (valid & (depth > MIN_DEPTH))
    aligned = align_scale_shift(pred_disparity, 1.0 / np.maximum(depth, MIN_DEPTH), mask)
    cap = 1.0 / depth[mask].max()
    pred_depth = 1.0 / np.maximum(aligned, cap)
    gt, pd = depth[mask], pred_depth[mask]
    ratio = np.maximum(pd / gt, gt / pd)
    return {"absrel": float(np.mean(np.abs(pd - gt) / gt)), "delta1": float(np.mean(ratio < 1.25))}


def vertical_prior(shape: tuple[int, ...]) -> np.ndarray:
    """The baseline guess "lower in the frame is nearer": disparity grows with the row."""
    t, h, w = shape
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[None, :, None]
    return np.broadcast_to(rows, (t, h, w)).copy()


def constant_prior(shape: tuple[int, ...]) -> np.ndarray:
    """The baseline guess "everything at one depth" (alignment picks the best one)."""
    return np.zeros(shape, np.float32)
