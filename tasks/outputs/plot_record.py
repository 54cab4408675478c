"""What one plot produced, for the storyboard, the timeline, the exports and the manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.hashing import frames_sha256, to_plain


@dataclass
class DeliveredPlot:
    """A plot at the delivery rate: its file, its frames on the story's timeline, its hash."""

    video_path: Path
    first_frame: int
    frames: int
    sha256: str

    def entry(self, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """The manifest's `delivered` part of a plot entry (video relative to the render)."""
        return {
            "video": _relative(self.video_path, out_dir),
            "record_frame": self.first_frame,
            "frames": self.frames,
            "sha256": self.sha256,
        }


def _relative(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())).as_posix()


@dataclass
class PlotRecord:
    """Everything one plot produced.

    `structure` is the guide the model saw (depth/edges/motion) in [-1, 1]; `generated` is one
    clip or a list of candidate clips (rendered side by side in the plot's mp4), at the model's
    rate; `delivered` is set once the plot is written at the delivery rate.
    """

    index: int
    text: str
    query: str
    prompt: str
    clip_id: str | None
    clip_uri: str | None
    clip_caption: str | None
    retrieved_frames: np.ndarray | None
    structure: np.ndarray | None
    generated: np.ndarray | list[np.ndarray]
    video_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    delivered: DeliveredPlot | None = None

    @property
    def candidates(self) -> list[np.ndarray]:
        """The generated clips as a list (one entry unless candidates were rendered)."""
        return list(self.generated) if isinstance(self.generated, list) else [self.generated]

    @property
    def frame_count(self) -> int:
        return int(self.candidates[0].shape[0])

    def manifest_entry(self, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """The plot's manifest row (the render flow adds seed, depth_key, clip source hash).

        `frames` and `frames_sha256` are the model's own frames; `delivered` the retimed file.
        """
        entry = {
            "index": self.index,
            "text": self.text,
            "query": self.query,
            "prompt": self.prompt,
            "clip_id": self.clip_id,
            "clip_uri": self.clip_uri,
            "clip_caption": self.clip_caption,
            "frames": self.frame_count,
            "frames_sha256": [frames_sha256(c) for c in self.candidates],
            "video": _relative(self.video_path, out_dir) if self.video_path else None,
            "params": to_plain(self.params),
        }
        if self.delivered is not None:
            entry["delivered"] = self.delivered.entry(out_dir)
        return entry
