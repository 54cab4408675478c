"""The judge: a small video classifier that reads a clip's attributes, its main object and features.

It reads the miniature world's attributes (the main object's shape, colour, texture and motion,
the camera move, the ground) from frames, segments the main object, and gives a penultimate
embedding whose Frechet distance between clip sets is the world's own FVD. It is trained on real
world clips only and never shares weights with a model it judges.

Two streams keep it cheap on a CPU:
- appearance: a per-frame 2-D CNN on `appearance_frames` frames at full size; a feature-pyramid
  head segments the main object, and the features pooled under that mask describe the object
  (shape, colour, texture) while the global pool describes the ground;
- motion: one 2-D CNN on every frame at half size stacked with the grey frame differences
  (early fusion), which sees the object move and the ground slide or swell under the camera; it
  also segments the main object in every frame (an auxiliary target that makes it track it).
Any clip is first resampled to the judge's own size and frame count (`prepare_clips`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


@dataclass
class JudgeOutput:
    """Logits per attribute (B, classes), the embedding (B, D), main-object mask logits for the
    appearance frames (B, K, h, w) and for every frame from the motion stream (B, T, h', w')."""

    logits: dict[str, torch.Tensor]
    embedding: torch.Tensor
    appearance_masks: torch.Tensor
    motion_masks: torch.Tensor


def _conv(c_in: int, c_out: int, stride: int = 1, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.SiLU(),
    )


class _Pyramid(nn.Module):
    """A stem at input size then one stride-2 stage per further width; returns every level."""

    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList([_conv(c_in, widths[0])])
        for c_prev, c_next in zip(widths[:-1], widths[1:], strict=True):
            self.stages.append(nn.Sequential(_conv(c_prev, c_next, 2), _conv(c_next, c_next)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels


class _MaskHead(nn.Module):
    """Mask logits at the size of the first given level, summed from 1x1 projections of all."""

    def __init__(self, widths: tuple[int, ...], outputs: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(w, outputs, 1) for w in widths)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        size = levels[0].shape[-2:]
        total = self.projections[0](levels[0])
        for projection, level in zip(self.projections[1:], levels[1:], strict=True):
            total = total + F.interpolate(
                projection(level), size=size, mode="bilinear", align_corners=False
            )
        return total


def _masked_mean(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) features averaged under (N, 1, H, W) weights resized to (h, w)."""
    if weights.shape[-2:] != features.shape[-2:]:
        weights = F.adaptive_avg_pool2d(weights, features.shape[-2:])
    return (features * weights).sum((-2, -1)) / weights.sum((-2, -1)).clamp_min(1e-3)


class VideoJudge(ModelMixin, ConfigMixin):
    """(B, T, 3, S, S) clips in [-1, 1] at the judge's size -> `JudgeOutput`."""

    @register_to_config
    def __init__(
        self,
        attributes: dict[str, list[str]] | None = None,
        frames: int = 16,
        size: int = 64,
        appearance_frames: int = 4,
        appearance_widths: tuple[int, ...] = (16, 32, 64, 96),
        motion_widths: tuple[int, ...] = (48, 96, 128),
        embedding_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not attributes:
            raise ValueError("the judge needs its attribute vocabularies, e.g. {'shape': [...]}")
        if frames < 2 or size % 2 ** len(appearance_widths) or not 1 <= appearance_frames <= frames:
            raise ValueError(
                f"judge shape frames={frames} size={size} appearance_frames={appearance_frames}: "
                f"needs >= 2 frames, a size divisible by {2 ** len(appearance_widths)}"
            )
        self.attribute_names = list(attributes)
        self.appearance = _Pyramid(3, tuple(appearance_widths))
        self.appearance_mask = _MaskHead(tuple(appearance_widths[1:]), 1)
        motion_in = 3 * ((frames + 1) // 2) + (frames - 1)
        self.motion = _Pyramid(motion_in, tuple(motion_widths))
        self.motion_mask = _MaskHead(tuple(motion_widths[1:]), frames)
        pooled = 2 * sum(appearance_widths) + 2 * motion_widths[-1] + appearance_widths[-1]
        self.embed = nn.Sequential(
            nn.Linear(pooled, embedding_dim), nn.SiLU(), nn.LayerNorm(embedding_dim)
        )
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(embedding_dim, len(values)) for name, values in attributes.items()}
        )

    def appearance_indices(self, frames: int) -> list[int]:
        """Frames the appearance stream reads: evenly spread over the clip."""
        k = self.config.appearance_frames
        return np.linspace(0, frames - 1, k).round().astype(int).tolist()

    def motion_input(self, video: torch.Tensor) -> torch.Tensor:
        """Every other frame in colour plus every grey frame difference, at half size."""
        b, t, c, h, w = video.shape
        small = F.avg_pool2d(video.reshape(b * t, c, h, w), 2).reshape(b, t, c, h // 2, w // 2)
        grey = small.mean(2)
        diffs = (grey[:, 1:] - grey[:, :-1]) * 4.0
        colour = small[:, ::2].reshape(b, -1, h // 2, w // 2)
        return torch.cat([colour, diffs], dim=1)

    def segment(self, video: torch.Tensor) -> torch.Tensor:
        """Main-object mask logits of every frame, (B, T, S/2, S/2), from the appearance stream."""
        b, t = video.shape[:2]
        levels = self.appearance(video.reshape(b * t, *video.shape[2:]))
        logits = self.appearance_mask(levels[1:])
        return logits.reshape(b, t, *logits.shape[-2:])

    def forward(self, video: torch.Tensor) -> JudgeOutput:
        b, t = video.shape[:2]
        if t != self.config.frames or video.shape[-1] != self.config.size:
            raise ValueError(
                f"judge input {tuple(video.shape)}: expected (B, {self.config.frames}, 3, "
                f"{self.config.size}, {self.config.size}); resample with prepare_clips first"
            )
        idx = self.appearance_indices(t)
        k = len(idx)
        frames = video[:, idx].reshape(b * k, *video.shape[2:])
        levels = self.appearance(frames)
        mask_logits = self.appearance_mask(levels[1:])
        weights = torch.sigmoid(mask_logits)
        objects = torch.cat([_masked_mean(level, weights) for level in levels], dim=1)
        surround = torch.cat([_masked_mean(level, 1.0 - weights) for level in levels], dim=1)
        scene = levels[-1].mean((-2, -1))
        appearance = torch.cat([objects, surround, scene], dim=1).reshape(b, k, -1).mean(1)

        motion_levels = self.motion(self.motion_input(video))
        motion_logits = self.motion_mask(motion_levels[1:])
        track = torch.sigmoid(motion_logits).mean(1, keepdim=True)
        motion = torch.cat(
            [motion_levels[-1].mean((-2, -1)), _masked_mean(motion_levels[-1], track)], dim=1
        )
        embedding = self.embed(torch.cat([appearance, motion], dim=1))
        hidden = self.drop(embedding)
        logits = {name: head(hidden) for name, head in self.heads.items()}
        return JudgeOutput(
            logits, embedding, mask_logits.reshape(b, k, *mask_logits.shape[-2:]), motion_logits
        )

    def save_half(self, folder: str | Path) -> Path:
        """config.json + fp16 safetensors (diffusers layout); `load_judge` brings it back fp32."""
        copy.deepcopy(self).half().save_pretrained(folder, safe_serialization=True)
        return Path(folder)


def load_judge(folder: str | Path, device: str = "cpu") -> VideoJudge:
    """A saved judge, fp32, frozen and in eval mode."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: no judge checkpoint here (config.json missing)")
    judge = VideoJudge.from_pretrained(root).float().to(device).eval()
    judge.requires_grad_(False)
    return judge


def prepare_clips(clips: np.ndarray | list[np.ndarray], frames: int, size: int) -> torch.Tensor:
    """uint8 clips (N, T, H, W, 3) of any T, H, W -> (N, frames, 3, size, size) in [-1, 1].

    Frames are picked at evenly spaced times (repeated when the clip is shorter) and resized
    with antialiasing, so a 32x32 x 8 render and a 64x64 x 16 one are read the same way.
    """
    out = []
    for clip in clips:
        clip = np.asarray(clip)
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or len(clip) < 1:
            raise ValueError(f"a clip must be (T, H, W, 3) uint8 with T >= 1, got {clip.shape}")
        idx = np.floor((np.arange(frames) + 0.5) * len(clip) / frames).astype(int)
        x = torch.from_numpy(np.ascontiguousarray(clip[idx])).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        out.append(x.div(127.5).sub(1.0).clamp(-1.0, 1.0))
    return torch.stack(out)
