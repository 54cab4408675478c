"""The judge's data: real miniature-world clips with their attribute labels and main-object masks,
and the augmentations that teach it to read a blurry, noisy or low-resolution render by content.

Augmentations never touch what a label names (no hue shift: colour is a label). Time reversal and
mirroring change the motion / camera labels they imply (towards <-> away, zoom in <-> out,
pan left <-> right). The degradations imitate what a generator's frames look like without
showing the judge a generated frame: blur, noise, JPEG, rendering at half size, 8 frames stretched
to 16, per-frame flicker, a small brightness / contrast change.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from story.tasks.world import miniworld, splits

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "texture", "motion", "camera", "background")
_REVERSED = {
    "motion": {"towards": "away", "away": "towards"},
    "camera": {
        "pan_left": "pan_right",
        "pan_right": "pan_left",
        "zoom_in": "zoom_out",
        "zoom_out": "zoom_in",
    },
}
_MIRRORED = {"camera": {"pan_left": "pan_right", "pan_right": "pan_left"}}


def attribute_vocab() -> dict[str, list[str]]:
    """Every attribute the judge reads and its classes, in the world's canonical order."""
    return {
        "shape": list(miniworld.SHAPES),
        "colour": list(miniworld.COLOURS),
        "texture": list(miniworld.TEXTURES),
        "motion": list(miniworld.MOTIONS),
        "camera": list(miniworld.CAMERAS),
        "background": list(miniworld.BACKGROUNDS),
    }


@dataclass
class JudgeClips:
    """rgb (N, T, H, W, 3) uint8, main-object masks (N, T, H, W) bool, class index per attribute."""

    rgb: np.ndarray
    masks: np.ndarray
    labels: dict[str, np.ndarray]
    seeds: list[int]


def label_indices(values: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Attribute dicts (as `miniworld.attributes` gives them) -> class indices per attribute."""
    vocab = attribute_vocab()
    return {
        name: np.array([vocab[name].index(row[name]) for row in values], np.int64)
        for name in ATTRIBUTES
    }


def render_judge_clips(
    seeds: list[int], frames: int, size: int, allowed: tuple[str, ...]
) -> JudgeClips:
    """Render the scenes of `seeds` (each checked to lie in an `allowed` split)."""
    splits.require_all(seeds, *allowed)
    rgb, masks, values = [], [], []
    for seed in seeds:
        clip = miniworld.render(
            miniworld.sample_scene(seed, frames=frames, height=size, width=size)
        )
        rgb.append(clip.rgb)
        masks.append(clip.masks == 1)
        values.append(miniworld.attributes(clip.spec))
    return JudgeClips(np.stack(rgb), np.stack(masks), label_indices(values), list(seeds))


def training_seeds(step: int, batch: int) -> list[int]:
    """The train-split clips of one step: every step sees fresh scenes, the same ones on resume."""
    return splits.seeds(splits.TRAIN, "judge", batch, start=step * batch)


def _swap(labels: dict[str, torch.Tensor], rows: torch.Tensor, table: dict) -> None:
    vocab = attribute_vocab()
    for name, pairs in table.items():
        mapping = torch.arange(len(vocab[name]))
        for a, b in pairs.items():
            mapping[vocab[name].index(a)] = vocab[name].index(b)
        labels[name][rows] = mapping[labels[name][rows]]


def _jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else frame
    return out


@dataclass(frozen=True)
class Augmentation:
    """Probabilities of each augmentation; `none()` gives the clean clips."""

    reverse: float = 0.5
    mirror: float = 0.5
    eight_frames: float = 0.25
    half_size: float = 0.3
    blur: float = 0.3
    noise: float = 0.3
    jpeg: float = 0.2
    tone: float = 0.5
    flicker: float = 0.2

    @classmethod
    def none(cls) -> Augmentation:
        return cls(**{name: 0.0 for name in cls.__dataclass_fields__})


def augment(
    clips: JudgeClips, rng: np.random.Generator, aug: Augmentation
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Clips -> video (N, T, 3, H, W) in [-1, 1], masks (N, T, H, W) float and labels."""
    n, t = clips.rgb.shape[:2]
    rgb = clips.rgb.copy()
    for i in np.flatnonzero(rng.random(n) < aug.jpeg):
        rgb[i] = _jpeg(rgb[i], int(rng.integers(30, 90)))
    video = torch.from_numpy(rgb).permute(0, 1, 4, 2, 3).float()
    masks = torch.from_numpy(clips.masks).float()
    labels = {name: torch.from_numpy(v.copy()) for name, v in clips.labels.items()}

    rows = torch.from_numpy(rng.random(n) < aug.reverse)
    video[rows], masks[rows] = video[rows].flip(1), masks[rows].flip(1)
    _swap(labels, rows, _REVERSED)
    rows = torch.from_numpy(rng.random(n) < aug.mirror)
    video[rows], masks[rows] = video[rows].flip(-1), masks[rows].flip(-1)
    _swap(labels, rows, _MIRRORED)

    rows = torch.from_numpy(rng.random(n) < aug.eight_frames)
    if rows.any():
        picked = np.linspace(0, t - 1, (t + 1) // 2).round().astype(int)
        stretched = np.floor((np.arange(t) + 0.5) * len(picked) / t).astype(int)
        video[rows] = video[rows][:, picked[stretched]]
        masks[rows] = masks[rows][:, picked[stretched]]
    for i in np.flatnonzero(rng.random(n) < aug.half_size):
        frames = video[i]
        h, w = frames.shape[-2:]
        if rng.random() < 0.5:
            small = F.interpolate(frames, size=(h // 2, w // 2), mode="bilinear", antialias=True)
        else:
            offset = int(rng.integers(0, 2))
            small = frames[..., offset::2, offset::2]
        video[i] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    for i in np.flatnonzero(rng.random(n) < aug.blur):
        video[i] = gaussian_blur(video[i], [5, 5], [float(rng.uniform(0.4, 1.2))])
    tone = torch.from_numpy(rng.random(n) < aug.tone)
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, n)).float()[:, None, None, None, None]
    bias = torch.from_numpy(rng.uniform(-12.0, 12.0, n)).float()[:, None, None, None, None]
    video[tone] = video[tone] * gain[tone] + bias[tone]
    flicker = torch.from_numpy(rng.random(n) < aug.flicker)
    per_frame = torch.from_numpy(rng.uniform(0.94, 1.06, (n, t))).float()
    video[flicker] = video[flicker] * per_frame[flicker][..., None, None, None]
    noisy = torch.from_numpy(rng.random(n) < aug.noise)
    sigma = torch.from_numpy(rng.uniform(2.0, 10.0, n)).float()
    noise = torch.from_numpy(rng.standard_normal(video.shape, dtype=np.float32))
    video[noisy] = video[noisy] + noise[noisy] * sigma[noisy, None, None, None, None]
    return video.clamp(0, 255).div(127.5).sub(1.0), masks, labels
