"""The structure-map convention shared by depth estimators and the synthesis model.

Structure maps are disparity-like (near = large), as MiDaS predicts, and normalised to [-1, 1]:
per frame by default, or over the whole clip so the guide does not flicker.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def depth_to_disparity(depth: torch.Tensor, min_depth: float = 1e-3) -> torch.Tensor:
    """Metric depth (any shape) -> disparity 1/depth, the quantity MiDaS-style models predict."""
    return 1.0 / depth.clamp_min(min_depth)


def normalize_structure(x: torch.Tensor, mode: str = "frame") -> torch.Tensor:
    """Min-max normalise a (..., T, H, W) disparity map to [-1, 1], per frame or per clip."""
    if mode not in ("frame", "clip"):
        raise ValueError(f"normalisation mode must be 'frame' or 'clip', got {mode!r}")
    if x.dim() < 3:
        raise ValueError(f"expected (..., T, H, W), got shape {tuple(x.shape)}")
    dims = (-2, -1) if mode == "frame" else (-3, -2, -1)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(EPS) * 2.0 - 1.0
