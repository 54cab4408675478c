"""The editorial timeline: an OpenTimelineIO file with one clip per plot.

Each clip points at its plot's mp4 by a URL relative to the timeline (the render folder moves
as one piece) and carries the plot's lineage in `metadata["story"]`, so an editor's tool
shows where every shot came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import opentimelineio as otio

from story.tasks.outputs.assemble import AssemblyError, PlotRecord, write_atomic
from story.tasks.script.parse import Story


def _json_safe(value: Any) -> Any:
    """Metadata as plain JSON values (OTIO stores dicts, lists, str, int, float, bool, None)."""
    return json.loads(json.dumps(value, default=str))


def plot_lineage(record: PlotRecord) -> dict[str, Any]:
    """What a shot is made of: its text, query, prompt, source clip and every parameter."""
    return _json_safe(
        {
            "index": record.index,
            "text": record.text,
            "query": record.query,
            "prompt": record.prompt,
            "clip_id": record.clip_id,
            "clip_uri": record.clip_uri,
            "clip_caption": record.clip_caption,
            **record.params,
        }
    )


def build_timeline(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    fps: float,
    render_id: str | None = None,
) -> otio.schema.Timeline:
    """The timeline object: one video track, one clip per plot in plot order."""
    out = Path(out_dir).resolve()
    timeline = otio.schema.Timeline(
        name=story.title,
        metadata={
            "story": _json_safe(
                {"title": story.title, "render_id": render_id, "source": story.source}
            )
        },
    )
    track = otio.schema.Track(name="plots", kind=otio.schema.TrackKind.Video)
    for record in sorted(records, key=lambda r: r.index):
        if record.video_path is None:
            raise AssemblyError(f"{out}: plot {record.index} has no video to put on the timeline")
        frames = record.frame_count
        duration = otio.opentime.TimeRange(
            start_time=otio.opentime.RationalTime(0, fps),
            duration=otio.opentime.RationalTime(frames, fps),
        )
        url = Path(os.path.relpath(Path(record.video_path).resolve(), out)).as_posix()
        clip = otio.schema.Clip(
            name=f"plot {record.index + 1}: {record.text}",
            media_reference=otio.schema.ExternalReference(target_url=url, available_range=duration),
            source_range=duration,
            metadata={"story": plot_lineage(record)},
        )
        track.append(clip)
    timeline.tracks.append(track)
    return timeline


def write_timeline(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    fps: float,
    render_id: str | None = None,
) -> Path:
    """Write `out_dir/timeline.otio` atomically and return its path."""
    out = Path(out_dir)
    timeline = build_timeline(out, story, records, fps, render_id)
    return write_atomic(out / "timeline.otio", otio.adapters.write_to_string(timeline, "otio_json"))
