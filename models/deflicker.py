"""Deflicker the delivered frames along their own motion: `deflicker` at the end of a render.

What is left of v3's flicker after the holds (docs/training.md) is on the object and on ground
that moves, where every change made while the frames are drawn (a heavier temporal term, a
smoother, the latent or pixel holds) also damped real motion: a model that cannot tell its own
wobble from motion damps both. The finished frames can tell them apart. This pass measures each
frame's motion from the frames themselves and smooths only what that motion does not explain,
the blind temporal-consistency filter of video post-production (a recurrent blend along the
optical flow: Bonneel et al. 2015, "Blind video temporal consistency"; Lai et al. 2018):

- out_0 = frame_0; for t >= 1 the previous *output* frame is carried to frame t along the
  backward optical flow of the *input* frames (t to t-1), and
  out_t = frame_t + a * c * (carried - frame_t);
- c = exp(-(d / SIGMA)^2) per pixel, d being how far (grey levels of 255, mean over RGB) the
  carried *input* frame t-1 lands from frame t: where the flow explains the change the blend
  acts, where it does not (an occlusion, an object coming in, a flash) the frame is left as it
  is, and so is every pixel carried from outside the frame.

The flow is OpenCV's DIS (medium preset, on frames upsampled FLOW_SCALE x), not the Farneback
flow the evaluation's warp error is measured with (`story.tasks.evaluation.temporal`), so the
pass does not optimise the metric's own flow field. It works on uint8 frames and returns uint8
frames, so a render's deflickered frames are a function of its frames alone: the same frames give
the same output byte for byte, which is what lets an evaluation derive a deflickered render from
the stored render it was made from (`story.tasks.evaluation.synthesis_renders`).
"""

from __future__ import annotations

import numpy as np
import torch

from story.models.vae import vae_output_to_frames

SIGMA = 10.0
"""Grey levels (of 255) at which a carried pixel that misses frame t by that much gets
exp(-1) of the blend; chosen on validation with the strength (docs/training.md)."""
FLOW_SCALE = 2
"""Frames are upsampled this many times for the flow: DIS's 8-px patches need more than the
few pixels a small object spans at 64x64."""


def check_deflicker(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"deflicker must be in [0, 1], got {strength}")


def backward_flow(frame: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """DIS flow (H, W, 2) from grey uint8 `frame` to grey uint8 `previous`: pixel (x, y) of
    `frame` shows what `previous` shows at (x, y) + flow."""
    import cv2  # here: only this pass and the holds need OpenCV in the model package

    h, w = frame.shape
    if FLOW_SCALE > 1:
        size = (w * FLOW_SCALE, h * FLOW_SCALE)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
        previous = cv2.resize(previous, size, interpolation=cv2.INTER_CUBIC)
    dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    flow = dis.calc(frame, previous, None)
    if FLOW_SCALE > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / FLOW_SCALE
    return flow


def deflicker(frames: np.ndarray, strength: float, sigma: float = SIGMA) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> the same shape, deflickered by `strength` a in [0, 1]
    (0: the frames as they are)."""
    import cv2

    check_deflicker(strength)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"deflicker: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    if strength == 0.0 or len(frames) < 2:
        return frames
    if sigma <= 0:
        raise ValueError(f"deflicker: sigma must be > 0, got {sigma}")
    t_count, h, w = frames.shape[:3]
    source = frames.astype(np.float32)
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = np.empty_like(source)
    out[0] = source[0]
    for t in range(1, t_count):
        flow = backward_flow(grey[t], grey[t - 1])
        map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
        carried = cv2.remap(
            out[t - 1], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        landed = cv2.remap(
            source[t - 1], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        miss = np.abs(landed - source[t]).mean(-1, keepdims=True)
        inside = ((map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1))[..., None]
        confidence = np.exp(-((miss / sigma) ** 2)) * inside
        out[t] = source[t] + strength * confidence * (carried - source[t])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def deflicker_video(video: torch.Tensor, strength: float) -> torch.Tensor:
    """Decoded video (B, C, T, H, W) float in [-1, 1] -> the same, each clip deflickered on its
    uint8 frames (`deflicker`) and returned on the same grid (k / 127.5 - 1), so it converts to
    the frames `synthesize` delivers exactly."""
    if strength == 0.0:
        return video
    frames = vae_output_to_frames(video.permute(0, 2, 1, 3, 4)).cpu().numpy()  # (B, T, H, W, 3)
    out = np.stack([deflicker(clip, strength) for clip in frames])
    back = torch.from_numpy(out).to(video.device).movedim(-1, 2).permute(0, 2, 1, 3, 4)
    return back.to(video.dtype) / 127.5 - 1.0
