"""What a concept trains on: augmented pseudo-videos of its images, and library clips.

Each image becomes a pseudo-video of the model's frame count with its static depth as the
structure guide, so the concept learns appearance, not "standing still"; crops, flips, zooming
out (the picture shrunk and moved, so the character is seen at other sizes and places and its
layout comes from the guide) and a mild brightness / contrast jitter keep its identity.
Regularisation clips, retrieved from the library by the class word, keep a LoRA close to the
base model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from story.models.structure_norm import normalize_structure
from story.tasks.concepts.params import ConceptParams


@dataclass
class TrainingClip:
    """One clip to train on: video (3, T, H, W) and structure (1, T, H, W) in [-1, 1]."""

    video: torch.Tensor
    structure: torch.Tensor
    caption: str

    @classmethod
    def from_frames(
        cls, rgb: np.ndarray, caption: str, depth: Callable[[np.ndarray], np.ndarray]
    ) -> TrainingClip:
        """(T, H, W, 3) uint8 frames with their caption; the structure is `depth` of them."""
        video = torch.from_numpy(np.array(rgb)).float().div(127.5).sub(1).permute(3, 0, 1, 2)
        structure = torch.from_numpy(np.asarray(depth(rgb), np.float32))[None]
        return cls(video, structure, caption)


class PseudoVideos:
    """Augmented pseudo-videos of the concept images, each with its static depth as the guide."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray | None],
        depth: Callable[[np.ndarray], np.ndarray],
        frames: int,
        height: int,
        width: int,
        params: ConceptParams,
    ) -> None:
        self.frames, self.height, self.width, self.params = frames, height, width, params
        self.images = [
            torch.from_numpy(np.array(i, np.float32)).permute(2, 0, 1) / 255 for i in images
        ]
        self.depths = [torch.from_numpy(np.asarray(depth(i[None]), np.float32)[0]) for i in images]
        self.masks = [
            torch.ones(i.shape[:2]) if m is None else torch.from_numpy(m.astype(np.float32))
            for i, m in zip(images, list(masks) or [None] * len(images), strict=True)
        ]

    def clip(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random crop / flip / zoom-out / jitter of image `index` as (video, structure, object
        mask). Zooming out shrinks the picture by up to `zoom_out` and places it anywhere in the
        frame, its border pixels extended outwards, so the concept is seen at other sizes and
        places and its layout has to come from the structure guide. With `params.augment` off,
        the whole image as drawn, only resized (no draws from `rng`)."""
        image, disparity, mask = self.images[index], self.depths[index], self.masks[index]
        if not self.params.augment:
            return self._pseudo_video(*self._resized(image, disparity, mask))
        _, h, w = image.shape
        scale = rng.uniform(self.params.crop_scale, 1.0)
        ch, cw = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        image = image[:, top : top + ch, left : left + cw]
        disparity = disparity[top : top + ch, left : left + cw]
        mask = mask[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            image, disparity, mask = image.flip(-1), disparity.flip(-1), mask.flip(-1)
        image, disparity, mask = self._resized(image, disparity, mask)
        if self.params.zoom_out > 0:
            image, disparity, mask = self._zoom_out(image, disparity, mask, rng)
        jitter = self.params.jitter
        brightness = rng.uniform(1 - jitter, 1 + jitter)
        contrast = rng.uniform(1 - jitter, 1 + jitter)
        image = ((image - image.mean()) * contrast + image.mean()) * brightness
        return self._pseudo_video(image, disparity, mask)

    def _resized(
        self, image: torch.Tensor, disparity: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = (self.height, self.width)
        return (
            F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0],
            F.interpolate(disparity[None, None], size=size, mode="bilinear")[0, 0],
            F.interpolate(mask[None, None], size=size, mode="bilinear")[0],
        )

    def _pseudo_video(
        self, image: torch.Tensor, disparity: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The still image repeated over the clip, its static depth as the guide."""
        video = (image.clamp(0, 1) * 2 - 1)[:, None].expand(-1, self.frames, -1, -1)
        guide = normalize_structure(disparity[None], mode="frame")
        structure = guide[None].expand(-1, self.frames, -1, -1)
        return video.contiguous(), structure.contiguous(), mask

    def _zoom_out(
        self, image: torch.Tensor, disparity: torch.Tensor, mask: torch.Tensor, rng
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = rng.uniform(1 - self.params.zoom_out, 1.0)
        h, w = max(2, round(self.height * scale)), max(2, round(self.width * scale))
        top, left = (
            int(rng.integers(0, self.height - h + 1)),
            int(rng.integers(0, self.width - w + 1)),
        )
        pad = (left, self.width - w - left, top, self.height - h - top)

        def place(x: torch.Tensor, mode: str) -> torch.Tensor:
            small = F.interpolate(x[None], size=(h, w), mode="bilinear", antialias=True)
            return F.pad(small, pad, mode=mode)[0]

        return (
            place(image, "replicate"),
            place(disparity[None], "replicate")[0],
            place(mask, "constant"),
        )


def regularization_clips(
    index: Any,
    encoder: Any,
    class_word: str,
    count: int,
    depth: Callable[[np.ndarray], np.ndarray],
    frames: int,
    height: int,
    width: int,
) -> list[TrainingClip]:
    """Top clips of the library for the class word, with their captions and estimated depth."""
    from story.tasks.library.media import read_frames
    from story.tasks.library.search import search

    clips = []
    for hit in search(index, encoder, class_word, k=count):
        row = index.get(hit.clip_id) or {}
        available = list(row.get("frame_indices") or [])
        if not available:
            continue
        pick = np.linspace(0, len(available) - 1, frames).round().astype(int)
        rgb = read_frames(hit.uri, [int(available[i]) for i in pick], size=(height, width))
        clips.append(TrainingClip.from_frames(rgb, hit.caption, depth))
    return clips
