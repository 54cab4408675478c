"""A finished render folder (outputs + manifest) made from tiny synthetic plots, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from story.tasks.hashing import render_id
from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.provenance.manifest import build_manifest, write_manifest
from story.tasks.script.parse import load_story

STORIES = Path(__file__).resolve().parents[2] / "test_files" / "stories"


def moving_square(frames: int, height: int, width: int, colour=(220, 40, 40)) -> np.ndarray:
    """A square sliding right over a smooth gradient: easy to encode, easy to check."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    video[..., 1] = np.linspace(30, 200, width, dtype=np.uint8)[None, None, :]
    side = max(2, min(height, width) // 3)
    for t in range(frames):
        x = (t * 2) % max(1, width - side)
        video[t, 2 : 2 + side, x : x + side] = colour
    return video


def plot_records(lengths: list[int], size: int = 16, candidates_at: int | None = None):
    """The example story's plots (good_basic.yaml) with moving-square frames of `lengths`."""
    story = load_story(STORIES / "good_basic.yaml")
    records = []
    for plot, length in zip(story.plots, lengths, strict=True):
        clip = moving_square(length, size, size, colour=(60 * plot.index, 40, 220))
        records.append(
            PlotRecord(
                index=plot.index,
                text=plot.text,
                query=plot.query,
                prompt=plot.prompt,
                clip_id=f"clip{plot.index}",
                clip_uri=f"media/{plot.index}.mp4",
                clip_caption="a ball",
                retrieved_frames=moving_square(length, size, size),
                structure=np.zeros((length, size, size), np.float32),
                generated=[clip, clip[:, ::-1].copy()] if plot.index == candidates_at else clip,
                params={"seed": 100 + plot.index, "tau": plot.tau},
            )
        )
    return story, records


def make_render(
    root: Path,
    lengths: tuple[int, ...] = (8, 6, 11),
    delivery: Delivery | None = None,
    candidates_at: int | None = None,
) -> Path:
    """Write a complete render folder under `root` and return it."""
    delivery = delivery or Delivery()
    story, records = plot_records(list(lengths), candidates_at=candidates_at)
    inputs = {
        "story": story.content_hash(),
        "seed": 0,
        "checkpoint": {"name": "tiny", "sha256": "c" * 64},
        "concepts": {"bob": "b" * 64},
        "delivery": delivery.record(),
        "plots": [{"index": r.index, "clip_id": r.clip_id} for r in records],
    }
    rid = render_id(inputs)
    out = root / rid
    outputs = write_outputs(out, story, records, fps=8, render_id=rid, delivery=delivery)
    plots = [
        {
            **r.manifest_entry(out),
            "seed": r.params["seed"],
            "concepts": ["bob"] if "<bob>" in r.prompt else [],
        }
        for r in records
    ]
    manifest = build_manifest(
        inputs=inputs,
        story=story,
        plots=plots,
        outputs=outputs,
        checkpoints=[{"name": "tiny", "sha256": "c" * 64}],
        environment={"git": {"commit": None, "dirty": None}},
    )
    write_manifest(out, manifest)
    return out
