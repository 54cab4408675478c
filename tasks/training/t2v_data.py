"""Training clips for the text-to-video model: generated miniature-world clips or a clip manifest.

A source yields `ClipBatch`es of video in [-1, 1], the normalised disparity guide (near = +1, the
convention every depth estimator follows) and captions. The miniature world renders fresh scenes
on the fly, so training never repeats a clip; seeds from `HELD_OUT_SEED` up are kept for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from story.models.structure_norm import depth_to_disparity, normalize_structure
from story.tasks.errors import StoryError
from story.tasks.world import miniworld

HELD_OUT_SEED = 10_000_000


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


class MiniworldSource:
    """Fresh miniature-world clips from seeds below `HELD_OUT_SEED`, randomly worded captions."""

    def __init__(self, frames: int, height: int, width: int, seed: int = 0) -> None:
        self.frames, self.height, self.width = frames, height, width
        self.rng = np.random.default_rng(seed)

    def scene(self, seed: int) -> miniworld.RenderedClip:
        spec = miniworld.sample_scene(
            seed, frames=self.frames, height=self.height, width=self.width
        )
        return miniworld.render(spec)

    def batch(self, size: int) -> ClipBatch:
        frames, guides, captions, masks = [], [], [], []
        for seed in self.rng.integers(0, HELD_OUT_SEED, size):
            clip = self.scene(int(seed))
            frames.append(clip.rgb)
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


def held_out_scenes(
    n: int, frames: int, height: int, width: int, start: int = HELD_OUT_SEED
) -> list[miniworld.RenderedClip]:
    """The fixed evaluation scenes: seeds never drawn for training."""
    return [
        miniworld.render(
            miniworld.sample_scene(start + i, frames=frames, height=height, width=width)
        )
        for i in range(n)
    ]
