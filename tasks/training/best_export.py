"""Ship a run's best validation step: fp16 weights, the selection notes and the whole curve.

Trainers that keep `best/` (the best step, diffusers-style save), `curve.json` and `state.pt`
(step, seconds, args) in their run folder share this export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch


class Exportable(Protocol):
    config: Any

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = ...) -> Path: ...


def export_best(
    load: Any, run: str | Path, out: str | Path, trained_on: str, selected_on: str
) -> Path:
    """`load(folder)` the run's best step, note how it was trained and chosen, write it fp16.

    `trained_on` / `selected_on` may name the run's arguments, e.g. `{train_clips}`."""
    run = Path(run)
    model: Exportable = load(run / "best")
    history = json.loads((run / "curve.json").read_text())
    state = torch.load(run / "state.pt", weights_only=True, map_location="cpu")
    model.config.notes = {
        "trained_on": trained_on.format(**state["args"]),
        "selected_on": selected_on.format(**state["args"]),
        "best": history["best"],
        "steps_run": state["step"],
        "minutes": round(state["seconds"] / 60, 1),
        "recipe": state["args"],
    }
    saved = model.save_pretrained(out, dtype=torch.float16)
    (saved / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")
    print(json.dumps({"out": str(saved), "best": history["best"]}))
    return saved
