"""A lineage-registry writer for crash tests, in its own light module so spawned processes
start fast (they import the registry, not the flows)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import build_manifest
from story.tasks.script.parse import load_story
from story.tasks.script.story import Story

STORY = Path(__file__).resolve().parents[1] / "test_files" / "stories" / "good_basic.yaml"


def render_manifest(story: Story, tag: str) -> dict[str, Any]:
    """A complete render manifest of `story`, distinct per `tag`."""
    return build_manifest(
        inputs={"story": story.content_hash(), "tag": tag},
        story=story,
        plots=[{"index": p.index, "clip_id": f"clip-{tag}-{p.index}"} for p in story.plots],
        outputs={"video": "story.mp4"},
        environment={"git": {"commit": None, "dirty": None}},
    )


def register_renders(workspace: str, worker: int, rounds: int | None) -> None:
    """Register this worker's renders; `rounds=None` keeps going until the process is killed."""
    story = load_story(STORY)
    registry = LineageRegistry(workspace)
    for n in itertools.count() if rounds is None else range(rounds):
        registry.add_render(render_manifest(story, f"{worker}-{n}"))
