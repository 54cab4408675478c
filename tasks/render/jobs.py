"""One plot render as a unit of work: the job a worker gets, the result it returns, its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from story.tasks.errors import StoryError


class RenderError(StoryError):
    """A plot cannot be rendered as asked (unknown checkpoint, unsupported structure, ...)."""


@dataclass(frozen=True)
class PlotJob:
    """What one rendered shot depends on, apart from the model weights."""

    index: int
    candidate: int
    prompt: str
    clip: dict[str, Any]
    frame_indices: tuple[int, ...]
    seed: int
    structure: str = "depth"
    params: dict[str, Any] = field(default_factory=dict)
    concepts: dict[str, str] = field(default_factory=dict)


@dataclass
class PlotResult:
    """The rendered shot and what the storyboard and the manifest need about it."""

    index: int
    candidate: int
    generated: np.ndarray
    retrieved: np.ndarray
    structure: np.ndarray
    structure_key: str
    shot_key: str
    cached: bool
    timings: dict[str, float]
