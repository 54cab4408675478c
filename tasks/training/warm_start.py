"""Starting a new model from a trained one's weights where they fit (`train_t2v --warm-start`).

A model on a new autoencoder (another latent size or compression) keeps the U-Net's and the
structure encoder's layer names; every tensor whose name and shape match is carried over, the
rest keeps its fresh initialisation, and the run records which were which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WARM_START_RECORD = "warm_start.json"
PARTS = ("unet", "structure_encoder")


def copy_matching(source: torch.nn.Module, target: torch.nn.Module) -> dict[str, Any]:
    """Copy into `target` every tensor of `source` with the same name and shape; returns how
    many were copied and the names left at their initialisation (missing or reshaped)."""
    theirs = source.state_dict()
    mine = target.state_dict()
    copied = {
        k: v.to(mine[k].dtype) for k, v in theirs.items() if k in mine and v.shape == mine[k].shape
    }
    target.load_state_dict(copied, strict=False)
    return {
        "copied": len(copied),
        "copied_params": int(sum(v.numel() for v in copied.values())),
        "total_params": int(sum(v.numel() for v in mine.values())),
        "left": sorted(set(mine) - set(copied)),
    }


def warm_start(model: Any, folder: str | Path, out: Path) -> None:
    """Copy the trained bundle in `folder` into `model` (U-Net and structure encoder) wherever
    it fits; what was copied goes to `out / WARM_START_RECORD`."""
    from story.models.t2v import StructureT2V

    source = StructureT2V.from_pretrained(folder, device="cpu")
    record: dict[str, Any] = {"from": str(folder)}
    for part in PARTS:
        record[part] = copy_matching(getattr(source, part), getattr(model, part))
    (out / WARM_START_RECORD).write_text(json.dumps(record, indent=2) + "\n")
