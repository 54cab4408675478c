"""Synthesis checkpoints as a render sees them: the folder a name means and its geometry.

Names resolve through the model zoo (`story.models.zoo`), so `tiny` means the same folder
everywhere; a name that resolves to nothing is a `RenderError` naming the folder it looked in.
"""

from __future__ import annotations

from pathlib import Path

from story.models.zoo import CheckpointError, SynthesisGeometry, synthesis_folder
from story.models.zoo import synthesis_geometry as zoo_geometry
from story.tasks.render.jobs import RenderError


def resolve_checkpoint(name: str, checkpoints: str | Path) -> Path:
    """A checkpoint name -> its folder under the checkpoints root (presets map `tiny`)."""
    try:
        return synthesis_folder(name, checkpoints)
    except CheckpointError as exc:
        raise RenderError(str(exc)) from exc


def checkpoint_geometry(folder: str | Path) -> SynthesisGeometry:
    """Frames, height and width the checkpoint renders, read from its folder."""
    try:
        return zoo_geometry(folder)
    except CheckpointError as exc:
        raise RenderError(str(exc)) from exc
