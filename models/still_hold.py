"""Hold still what the guide clip holds still: `still_hold` at sampling.

Where v3's flicker is (docs/training.md): the largest excess over the real clip is ground that
should not change at all, the background of still-camera shots, 2.6x the real clip's warp error.
Depth cannot say where the picture is still (a pan over flat ground keeps every depth value), so
the still map is read from the guide clip's own frames: a latent cell is still between frames
t-1 and t when no pixel of it, nor of its neighbours (`margin` cells, for a render that follows
its guide only approximately), moves in the guide's optical flow or changes its grey level.

`still_hold` h acts at every denoising step, on the model's prediction of the clean latents:
each cell, over each run of frames in which it stays still, moves h of the way to the run's
mean, so at h = 1 the cell is the same in every frame of the run and at 0 nothing changes. A
cell that moves in the guide, a frame where it moves and a shot without a guide clip are left
as they are. On by default at 1 since its sealed run (docs/training.md, "Holding still what the
clip holds still": warp error -5% on the sealed plots with motion, structure and every judge
column unchanged).

`pixel_hold` p does the same to the decoded frames, pixel by pixel: a pixel the guide holds
still (its own flow and grey level, `PIXEL_MARGIN` pixels of margin rather than the latent hold's
whole cell) moves p of the way to its mean over each run of frames it stays still. The latent
hold leaves a held cell the same latents in every frame, but the decoder reads its neighbours
too, so a held cell next to a moving one still flickers; the pixel hold removes that, and holds
the finer still ground a 4x4 cell with a cell of margin cannot reach. A TD knob, off by default:
on 80 validation plots it cut warp error 8.8% with the motion unchanged but cost 0.3% of depth
error, which its rule did not allow (docs/training.md, "Holding still pixels after decoding").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FLOW_PIXELS = 0.25
"""Guide pixels whose Farneback flow is longer than this (pixels at the model's resolution) move."""
GREY_LEVELS = 4.0
"""Guide pixels whose grey level (0..255, after a 3x3 blur) changes by more than this move."""
PIXEL_MARGIN = 2
"""`pixel_hold` leaves this many pixels around every moving guide pixel alone (chosen on 12
validation plots over 4 and over the latent hold's cells: docs/training.md)."""


def check_still_hold(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"still_hold must be in [0, 1], got {weight}")


def check_pixel_hold(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"pixel_hold must be in [0, 1], got {weight}")


def moving_pixels(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) guide frames -> (T, height, width) bool at `size`: the pixel moves between
    frame t-1 and frame t (frame 0: True). The frames are read at `size` (the model's pixel
    resolution) first, so the thresholds mean the same at any source resolution."""
    import cv2  # here: only these knobs need OpenCV in the model package

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise ValueError(f"still_hold: guide frames must be (T, H, W, 3), got {frames.shape}")
    height, width = size
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    grey = [
        cv2.GaussianBlur(
            cv2.resize(
                cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY),
                (width, height),
                interpolation=cv2.INTER_AREA,
            ),
            (3, 3),
            0,
        )
        for f in frames
    ]
    moving = np.ones((len(frames), height, width), bool)
    for t in range(1, len(frames)):
        flow = cv2.calcOpticalFlowFarneback(grey[t - 1], grey[t], None, 0.5, 3, 9, 3, 5, 1.1, 0)
        changed = np.abs(grey[t].astype(np.float32) - grey[t - 1].astype(np.float32))
        moving[t] = (np.linalg.norm(flow, axis=-1) > FLOW_PIXELS) | (changed > GREY_LEVELS)
    return moving


def still_cells(
    frames: np.ndarray, size: tuple[int, int], latent: tuple[int, int], margin: int = 1
) -> torch.Tensor:
    """(T, H, W, 3) guide frames -> (T, h, w) bool on the latent grid `latent`: cell still
    between frame t-1 and frame t (frame 0: False). The frames are read at `size` (the model's
    pixel resolution) first, so the thresholds mean the same at any source resolution."""
    return cells_from_moving(moving_pixels(frames, size), latent, margin)


def cells_from_moving(moving: np.ndarray, latent: tuple[int, int], margin: int = 1) -> torch.Tensor:
    """`still_cells` from a `moving_pixels` map, so one read of the guide's motion serves both
    holds."""
    cells = F.adaptive_max_pool2d(torch.from_numpy(moving).float()[:, None], latent)
    if margin:
        cells = F.max_pool2d(cells, 2 * margin + 1, stride=1, padding=margin)
    return cells[:, 0] == 0


def still_pixels(
    frames: np.ndarray, size: tuple[int, int], margin: int = PIXEL_MARGIN
) -> torch.Tensor:
    """(T, H, W, 3) guide frames -> (T, height, width) bool at `size`: pixel still between frame
    t-1 and frame t, and so is every pixel within `margin` of it (frame 0: False)."""
    return pixels_from_moving(moving_pixels(frames, size), margin)


def pixels_from_moving(moving: np.ndarray, margin: int = PIXEL_MARGIN) -> torch.Tensor:
    """`still_pixels` from a `moving_pixels` map."""
    grown = torch.from_numpy(moving).float()[:, None]
    if margin:
        grown = F.max_pool2d(grown, 2 * margin + 1, stride=1, padding=margin)
    return grown[:, 0] == 0


def _batched(still: torch.Tensor, x: torch.Tensor, knob: str, what: str) -> torch.Tensor:
    """A (T, h, w) or (B, T, h, w) still map as (B, T, h, w) on `x`'s device, checked against
    `x` (B, C, T, h, w)."""
    if still.dim() == 3:
        still = still.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    if still.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"{knob}: still map {tuple(still.shape)} does not match the {what} {tuple(x.shape)}"
        )
    return still.to(x.device)


def run_means(x: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """(B, C, T, h, w) latents -> each cell's mean over its run of still frames (a run starts at
    every frame where the cell is not still, and at frame 0); `still` (B, T, h, w) bool."""
    frames = x.shape[2]
    starts = ~still
    starts[:, 0] = True  # a window's first frame starts a run whatever came before it
    run = torch.cumsum(starts.long(), dim=1) - 1  # (B, T, h, w): run index, 0..T-1
    onehot = F.one_hot(run, frames).to(x.dtype)  # (B, T, h, w, R)
    sums = torch.einsum("bcthw,bthwr->bchwr", x, onehot)
    counts = onehot.sum(1)  # (B, h, w, R)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return torch.einsum("bchwr,bthwr->bcthw", means, onehot)


def first_runs(still: torch.Tensor) -> torch.Tensor:
    """(B, T, h, w) bool: the frames of each cell's first still run (frame 0 and every frame
    after it up to the first frame where the cell moves), only where that run is longer than
    frame 0 alone."""
    if still.shape[1] < 2:
        return torch.zeros_like(still)
    moved = ~still
    moved[:, 0] = False
    first = torch.cumsum(moved.long(), dim=1) == 0
    return first & still[:, 1:2]


def hold_still(
    x: torch.Tensor, still: torch.Tensor, weight: float, prompt: torch.Tensor | None = None
) -> torch.Tensor:
    """`x` moved `weight` of the way to its still runs' means (`run_means`).

    `prompt` (B, C, M, h, w): the clean latents a long shot's window continues from, its first
    M frames (Reuse-and-Diffuse's prompt frames, already shown by the window before). A cell
    still from the window's first frame on is then held to the prompt frames of its first run
    rather than to the run's mean, so what the shot held still before the seam stays exactly
    as it was after it."""
    if weight == 0.0:
        return x
    still = _batched(still, x, "still_hold", "latents")
    target = run_means(x, still)
    if prompt is not None:
        m = prompt.shape[2]
        if prompt.shape[:2] != x.shape[:2] or prompt.shape[3:] != x.shape[3:] or m > x.shape[2]:
            raise ValueError(
                f"still_hold: prompt frames {tuple(prompt.shape)} do not match the latents "
                f"{tuple(x.shape)}"
            )
        first = first_runs(still)  # (B, T, h, w)
        within = first[:, :m].unsqueeze(1).to(x.dtype)  # (B, 1, M, h, w)
        anchor = (prompt.to(x) * within).sum(2) / within.sum(2).clamp(min=1)  # (B, C, h, w)
        target = torch.where(first.unsqueeze(1), anchor.unsqueeze(2), target)
    return x + weight * (target - x)


def hold_pixels(video: torch.Tensor, still: torch.Tensor, weight: float) -> torch.Tensor:
    """Decoded frames (B, C, T, H, W) moved `weight` of the way to their still runs' means where
    `still` ((B, T, H, W) or (T, H, W) bool, `still_pixels`) says the guide holds them still."""
    if weight == 0.0:
        return video
    still = _batched(still, video, "pixel_hold", "frames")
    return video + weight * (_run_means_by_sums(video, still) - video)


def _run_means_by_sums(x: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """`run_means` from running sums: O(T) memory per pixel rather than O(T^2), for full-size
    frames of a long shot (`run_means`'s one-hot of a 256-frame shot at 64x64 is 1 GB)."""
    frames = x.shape[2]
    starts = ~still
    starts[:, 0] = True
    steps = torch.arange(frames, device=x.device).view(1, frames, 1, 1)
    first = torch.cummax(torch.where(starts, steps, 0), dim=1).values  # run's first frame
    ends = torch.zeros_like(starts)
    ends[:, :-1] = starts[:, 1:]
    ends[:, -1] = True
    last = torch.where(ends, steps, frames - 1).flip(1)
    last = torch.cummin(last, dim=1).values.flip(1)  # run's last frame
    sums = torch.cumsum(x.double(), dim=2)
    before = torch.where(
        (first > 0).unsqueeze(1),
        sums.gather(2, (first - 1).clamp(min=0).unsqueeze(1).expand_as(x)),
        torch.zeros((), dtype=sums.dtype, device=x.device),
    )
    total = sums.gather(2, last.unsqueeze(1).expand_as(x)) - before
    return (total / (last - first + 1).unsqueeze(1)).to(x.dtype)
