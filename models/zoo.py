"""The model zoo: which folder a model name means, and what a synthesis checkpoint renders.

Preset names map to folders under the checkpoints root (`tiny` is the bundled default); any
other name is a folder of that name there. A synthesis checkpoint's geometry (frames, height,
width, structure channels) is read from its own `model_index.json`, never assumed, so every
caller (the CLI's depth size, planning, workers) agrees with the weights. Reading it needs no
torch, so the CLI can ask cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNTHESIS_PRESETS = {"tiny": "t2v-tiny"}
DEPTH_PRESETS = {"tiny": "depth-tiny"}
SYNTHESIS_INDEX = "model_index.json"


class CheckpointError(LookupError):
    """A checkpoint name that names no usable model (the message says which and where)."""


def synthesis_folder(name: str, checkpoints: str | Path) -> Path:
    """A synthesis checkpoint name (a preset or a folder name under the root) -> its folder."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(f"checkpoint {name!r}: give a name of a folder in {checkpoints}")
    folder = Path(checkpoints) / SYNTHESIS_PRESETS.get(name, name)
    if not (folder / SYNTHESIS_INDEX).is_file():
        raise CheckpointError(
            f"checkpoint {name!r}: no model at {folder} ({SYNTHESIS_INDEX} missing)"
        )
    return folder


def depth_folder(spec: str | Path, checkpoints: str | Path | None) -> Path:
    """A depth model spec -> its folder: a preset under the checkpoints root, else the path."""
    preset = DEPTH_PRESETS.get(str(spec))
    if preset is None:
        return Path(spec)
    if checkpoints is None:
        raise CheckpointError(f"the {spec!r} depth preset needs the checkpoints folder")
    return Path(checkpoints) / preset


@dataclass(frozen=True)
class SynthesisGeometry:
    """What one call of a synthesis checkpoint renders: frames of height x width."""

    frames: int
    height: int
    width: int
    structure_channels: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def synthesis_config(folder: str | Path) -> dict[str, Any]:
    """A synthesis checkpoint's `model_index.json` (geometry and settings), without weights."""
    path = Path(folder) / SYNTHESIS_INDEX
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint's index: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return config


def synthesis_geometry(folder: str | Path) -> SynthesisGeometry:
    """Frames, height, width and structure channels the checkpoint at `folder` renders."""
    config = synthesis_config(folder)
    try:
        return SynthesisGeometry(
            frames=int(config["frames"]),
            height=int(config["height"]),
            width=int(config["width"]),
            structure_channels=int(config.get("structure_channels", 1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{Path(folder) / SYNTHESIS_INDEX}: no valid frames/height/width: {exc}"
        ) from exc
