"""Training clips for the text-to-video model: generated miniature-world clips or a clip manifest.

A source yields `ClipBatch`es of video in [-1, 1], the normalised disparity guide (near = +1, the
convention every depth estimator follows) and captions. The miniature world renders fresh scenes
on the fly, so training never repeats a clip; training seeds are the train split's scene block and
held-out scenes come from the validation split (`story.tasks.world.splits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from story.models.structure_norm import depth_to_disparity, normalize_structure
from story.tasks.errors import StoryError
from story.tasks.world import miniworld, splits

TRAIN_SCENES = splits.base(splits.TRAIN, "scenes"), splits.PURPOSE_BLOCK
"""First seed and count of the scenes training draws from."""


@dataclass
class ClipBatch:
    """video (B, 3, T, H, W) and structure (B, 1, T, H, W) in [-1, 1], one caption per clip;
    `objects` (B, T, H, W) marks object pixels where the source knows them."""

    video: torch.Tensor
    structure: torch.Tensor
    captions: list[str]
    objects: torch.Tensor | None = None


def miniworld_structure(depth: np.ndarray, normalize: str = "frame") -> np.ndarray:
    """Exact miniature-world depth (T, H, W) -> the normalised disparity guide (T, H, W)."""
    disparity = depth_to_disparity(torch.tensor(np.asarray(depth, dtype=np.float32)))
    return normalize_structure(disparity, mode=normalize).numpy()


def stack_clips(
    frames: list[np.ndarray],
    guides: list[np.ndarray],
    captions: list[str],
    masks: list[np.ndarray] | None = None,
) -> ClipBatch:
    """uint8 (T, H, W, 3) frames, (T, H, W) guides and optional object masks -> a `ClipBatch`."""
    video = torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1.0)
    structure = torch.from_numpy(np.stack(guides)).float()
    objects = torch.from_numpy(np.stack(masks) > 0).float() if masks is not None else None
    return ClipBatch(video.permute(0, 4, 1, 2, 3), structure[:, None], captions, objects)


def random_colour_map(rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 RGB map: a hue rotation about the grey axis times per-channel gains.

    Applied to palette colours it gives colours no caption names, with shading and texture kept,
    so an autoencoder trained on mapped frames keeps colours outside the world's palette.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi)
    axis = np.ones(3) / np.sqrt(3.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = (
        np.cos(angle) * np.eye(3)
        + np.sin(angle) * cross
        + (1 - np.cos(angle)) * np.outer(axis, axis)
    )
    return np.diag(rng.uniform(0.55, 1.45, 3)) @ rotation


def recolour(rgb: np.ndarray, masks: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """uint8 (T, H, W, 3) frames with each object (and, at half the rate, the background)
    recoloured by a random colour map with probability `p`."""
    out = rgb.astype(np.float32)
    for label in np.unique(masks):
        if rng.random() < (p if label > 0 else p / 2):
            region = masks == label
            out[region] = out[region] @ random_colour_map(rng).T
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def images_from(
    batch: ClipBatch, per_clip: int, rng: np.random.Generator, limit: int | None = None
) -> ClipBatch:
    """An image batch (T = 1) of `per_clip` random frames of each clip, captions repeated."""
    b, _, frames = batch.video.shape[:3]
    clip_index = np.repeat(np.arange(b), per_clip)[:limit]
    frame_index = rng.integers(0, frames, len(clip_index))
    ci, fi = torch.from_numpy(clip_index), torch.from_numpy(frame_index)
    video = batch.video[ci, :, fi][:, :, None]
    structure = batch.structure[ci, :, fi][:, :, None]
    objects = batch.objects[ci, fi][:, None] if batch.objects is not None else None
    captions = [batch.captions[i] for i in clip_index]
    return ClipBatch(video, structure, captions, objects)


class MiniworldSource:
    """Fresh miniature-world clips from the train split's scenes, randomly worded captions.

    `recolour` > 0 maps object (and background) colours off the palette for that share of
    regions: for the autoencoder only, since the captions no longer name those colours.
    """

    def __init__(
        self, frames: int, height: int, width: int, seed: int = 0, recolour: float = 0.0
    ) -> None:
        self.frames, self.height, self.width = frames, height, width
        self.rng = np.random.default_rng(seed)
        self.recolour = recolour

    def scene(self, seed: int) -> miniworld.RenderedClip:
        spec = miniworld.sample_scene(
            splits.require(seed, splits.TRAIN),
            frames=self.frames,
            height=self.height,
            width=self.width,
        )
        return miniworld.render(spec)

    def batch(self, size: int) -> ClipBatch:
        frames, guides, captions, masks = [], [], [], []
        first, count = TRAIN_SCENES
        for seed in self.rng.integers(first, first + count, size):
            clip = self.scene(int(seed))
            rgb = clip.rgb
            if self.recolour:
                rgb = recolour(rgb, clip.masks, self.rng, self.recolour)
            frames.append(rgb)
            masks.append(clip.masks)
            guides.append(miniworld_structure(clip.depth))
            captions.append(miniworld.make_caption(clip.spec, int(self.rng.integers(0, 4))))
        return stack_clips(frames, guides, captions, masks)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class ManifestSource:
    """Clips of a captioned manifest: frames decoded at the model size, depth from an estimator."""

    def __init__(
        self,
        manifest: str | Path,
        frames: int,
        height: int,
        width: int,
        depth_model: str = "tiny",
        checkpoints: str | Path | None = None,
        stride: int = 2,
        seed: int = 0,
    ) -> None:
        from story.models.depth import load_depth_estimator
        from story.tasks.library.manifest import read_manifest

        self.rows = [row for row in read_manifest(manifest) if row.caption]
        if not self.rows:
            raise StoryError(f"{manifest}: no rows with a caption to train on")
        self.frames, self.height, self.width, self.stride = frames, height, width, stride
        self.estimator = load_depth_estimator(depth_model, checkpoints, device="cpu")
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> ClipBatch:
        from story.tasks.library.media import VideoReader

        frames, guides, captions = [], [], []
        for index in self.rng.integers(0, len(self.rows), size):
            row = self.rows[int(index)]
            with VideoReader(row.uri, min_frames=1) as reader:
                fps = reader.info.fps
                first = int((row.start or 0.0) * fps)
                last = int(row.end * fps) if row.end is not None else reader.info.frames
                span = self.frames * self.stride
                start = first + int(self.rng.integers(0, max(1, last - first - span + 1)))
                indices = [
                    min(start + i * self.stride, max(first, last - 1)) for i in range(self.frames)
                ]
                clip = reader.read(indices, size=(self.height, self.width))
            frames.append(clip)
            guides.append(self.estimator.estimate(clip))
            captions.append(row.caption)
        return stack_clips(frames, guides, captions)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def held_out_scenes(n: int, frames: int, height: int, width: int) -> list[miniworld.RenderedClip]:
    """The training curve's fixed scenes: the first `n` validation scenes."""
    return [
        miniworld.render(miniworld.sample_scene(seed, frames=frames, height=height, width=width))
        for seed in splits.seeds(splits.VALIDATION, "scenes", n)
    ]
