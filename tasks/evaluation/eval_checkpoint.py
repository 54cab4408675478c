"""The synthesis checkpoint an evaluation scores: a zoo name (`tiny`) or any checkpoint folder.

Evaluations accept a path too, so training snapshots (runs/.../snapshots/step-001000, the same
diffusers-style layout as an exported checkpoint) are scored without being copied into the zoo.
"""

from __future__ import annotations

from pathlib import Path

from story.models.zoo import SYNTHESIS_INDEX
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.jobs import RenderError


def eval_checkpoint(spec: str | Path, checkpoints: str | Path) -> Path:
    """`spec` as a folder if it holds a synthesis model, else a name under `checkpoints`."""
    folder = Path(spec)
    looks_like_path = "/" in str(spec) or folder.is_dir()
    if looks_like_path and (folder / SYNTHESIS_INDEX).is_file():
        return folder
    if "/" in str(spec):
        raise RenderError(
            f"checkpoint {spec}: no synthesis model in that folder ({SYNTHESIS_INDEX} missing)"
        )
    return resolve_checkpoint(str(spec), checkpoints)
