"""A finished render read back for hand-off: its manifest, delivery and timeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import opentimelineio as otio

from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.timeline import TIMELINE
from story.tasks.provenance.manifest import read_manifest


def load_render_timeline(
    folder: str | os.PathLike[str],
) -> tuple[otio.schema.Timeline, dict[str, Any], Delivery]:
    """A render's timeline, manifest and delivery; refuses renders made before delivery rates."""
    root = Path(folder)
    manifest = read_manifest(root)
    delivery_record = manifest.get("inputs", {}).get("delivery")
    path = root / manifest["outputs"].get("timeline", TIMELINE)
    if not delivery_record:
        raise AssemblyError(
            f"{path}: render {manifest['render_id']} was made before delivery rates (its "
            "timeline runs at the model's rate); render the story again to export it (its "
            "shots are cached)"
        )
    try:
        timeline = otio.adapters.read_from_file(str(path))
    except Exception as exc:  # OTIO raises its own and JSON errors alike
        raise AssemblyError(f"{path}: cannot read the timeline: {exc}") from exc
    return timeline, manifest, Delivery.from_record(delivery_record)
