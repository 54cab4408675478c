"""Starting noise that moves with the structure: a shared draw advected along the guide's motion.

`noise_share` gives every frame part of one draw at the same place, which calms flicker but
also holds things still (the shared part asks each frame for the same picture). `noise_warp` w
gives every frame part of one draw *carried along the structure's own motion*: optical flow of
the structure maps (the depth the shot follows), chained from frame 0, says where each latent
pixel of frame t came from, and the shared draw is read there (nearest neighbour, so every value
is still a unit Gaussian). Each frame's start is sqrt(w) * advected shared + sqrt(1 - w) * own,
so the variance stays 1. Where nothing moves this is `noise_share`; where the guide moves, the
noise moves with it, after "How I Warped Your Noise" (Chang et al., 2024), without its
distribution-preserving integral (a nearest-neighbour read duplicates values under a zoom in).
Positions that leave the frame wrap around, reading values no other pixel of that frame reads.

Flow comes from the structure's first channel (depth), so motion depth cannot see (a pan over a
flat ground) is not followed there; no structure means no motion, which is `noise_share`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_noise_warp(warp: float) -> None:
    if not 0.0 <= warp < 1.0:
        raise ValueError(f"noise_warp must be in [0, 1), got {warp}")


def structure_flow(structure: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Backward optical flow of each structure's first channel, (B, T, 2, h, w) in latent pixels:
    frame t's pixel p shows what frame t-1 showed at p + flow[t]; flow[0] is zero."""
    import cv2  # here: only this knob needs OpenCV in the model package

    b, _, frames, height, width = structure.shape
    h, w = size
    maps = ((structure[:, 0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    maps = maps.cpu().numpy()
    flows = np.zeros((b, frames, 2, height, width), np.float32)
    for i in range(b):
        for t in range(1, frames):
            flow = cv2.calcOpticalFlowFarneback(
                maps[i, t], maps[i, t - 1], None, 0.5, 3, 9, 3, 5, 1.1, 0
            )
            flows[i, t] = flow.transpose(2, 0, 1)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(flows).flatten(0, 1), (h, w))
    scale = torch.tensor([w / width, h / height]).view(1, 2, 1, 1)
    return (pooled * scale).view(b, frames, 2, h, w)


def source_positions(flow: torch.Tensor) -> torch.Tensor:
    """Chain backward flows (B, T, 2, h, w): where each latent pixel of frame t was in frame 0,
    (B, T, 2, h, w) as (x, y) in latent pixels, sub-pixel positions kept along the chain."""
    b, frames, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    grid = torch.stack([xs, ys]).expand(b, 2, h, w)
    positions = [grid]
    for t in range(1, frames):
        # The pixel came from p + flow[t] in frame t-1, which came from positions[t-1] there.
        where = grid + flow[:, t]
        previous = carry_frame(positions[-1], flow[:, t])
        # Beyond the border the chain continues straight: the out-of-frame offset is kept.
        outside = where - where.clamp(min=0).minimum(torch.tensor([w - 1, h - 1]).view(1, 2, 1, 1))
        positions.append(previous + outside)
    return torch.stack(positions, 1)


def advect(shared: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Read a (B, C, h, w) draw at (B, T, 2, h, w) positions, nearest and wrapping around:
    (B, C, T, h, w)."""
    b, c, h, w = shared.shape
    frames = positions.shape[1]
    x = positions[:, :, 0].round().long().remainder(w)
    y = positions[:, :, 1].round().long().remainder(h)
    index = (y * w + x).view(b, 1, frames * h * w).expand(b, c, -1)
    return shared.flatten(2).gather(2, index).view(b, c, frames, h, w)


def warp_shared(
    noise: torch.Tensor,
    warp: float,
    structure: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(B, C, T, h, w) unit noise -> sqrt(w) * a shared draw advected along the structure's flow
    + sqrt(1 - w) * noise. The shared draw comes after `noise` from the same generator, so w = 0
    changes nothing."""
    check_noise_warp(warp)
    if warp == 0.0:
        return noise
    b, c, frames, h, w = noise.shape
    shared = torch.randn((b, c, h, w), generator=generator, dtype=noise.dtype)
    if structure is not None and (structure.shape[0] != b or structure.shape[2] != frames):
        raise ValueError(
            f"noise_warp: structure {tuple(structure.shape)} does not match the noise "
            f"{tuple(noise.shape)} in batch and frames"
        )
    return mix_warped(carried_draw(shared, structure, frames), noise, warp)


def carried_draw(shared: torch.Tensor, structure: torch.Tensor | None, frames: int) -> torch.Tensor:
    """A (B, C, h, w) draw carried along the structure's flow from its first frame, (B, C,
    frames, h, w); without a structure, the same draw in every frame."""
    b, c, h, w = shared.shape
    if structure is None:
        return shared.unsqueeze(2).expand(b, c, frames, h, w)
    return advect(shared, source_positions(structure_flow(structure, (h, w))))


def mix_warped(moved: torch.Tensor, noise: torch.Tensor, warp: float) -> torch.Tensor:
    """sqrt(w) * the carried draw + sqrt(1 - w) * the frames' own noise (unit variance kept)."""
    return warp**0.5 * moved.to(noise.device) + (1.0 - warp) ** 0.5 * noise


def carry_frame(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents of frame t-1 read where frame t's pixels came from (`flow`: (B, 2, h,
    w), backward, in latent pixels), bilinear, the border repeated."""
    b, _, h, w = frame.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    where = torch.stack([xs, ys]).to(flow) + flow
    norm = torch.stack([where[:, 0] / max(1, w - 1), where[:, 1] / max(1, h - 1)], -1) * 2 - 1
    return F.grid_sample(
        frame, norm.to(frame), mode="bilinear", padding_mode="border", align_corners=True
    )


def check_flow_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"flow_smoothing must be in [0, 1), got {smoothing}")


def smooth_along_flow(
    x: torch.Tensor, flows: tuple[torch.Tensor, torch.Tensor], s: float
) -> torch.Tensor:
    """(B, C, T, h, w) latents averaged with their neighbours along the motion: a running mean
    x'[t] = (1 - s) x[t] + s x'[t-1] carried along the flow, forwards and then backwards (so
    no frame lags the others). `flows`: the backward flows of the frames in order and of the
    frames reversed (`structure_flow` of each), each (B, T, 2, h, w)."""

    def one_way(v: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        out = [v[:, :, 0]]
        for t in range(1, v.shape[2]):
            out.append((1 - s) * v[:, :, t] + s * carry_frame(out[-1], flow[:, t]))
        return torch.stack(out, 2)

    forward, backward = flows
    return one_way(one_way(x, forward).flip(2), backward).flip(2)
