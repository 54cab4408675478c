"""The editorial timeline: an OpenTimelineIO file with one clip per plot, at the delivery rate.

Each clip points at its plot's delivered mp4 by a URL relative to the timeline (the render
folder moves as one piece) with the file's available range, and carries the plot's lineage in
`metadata["story"]`, a stable AAF MobID and an 8-character reel, so `otioconvert` turns it into
EDL, FCP XML or AAF as it is (`story export` adds the record start and per-format names).
The cut starts at the record start (01:00:00:00 unless asked otherwise).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import opentimelineio as otio

from story.tasks.hashing import sha256_json
from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.files import write_atomic
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.outputs.timecode import RECORD_START, timecode_frames
from story.tasks.script.story import Story

TIMELINE = "timeline.otio"
TRACK_NAME = "plots"
EDL_REEL = 8
"""CMX 3600 reel names: at most 8 letters and digits."""
UMID_PREFIX = "urn:smpte:umid:060a2b34.01010105.01010f20.13000000"


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


def mob_id(render_id: str | None, index: int) -> str:
    """A stable SMPTE UMID for a plot's master clip (AAF needs one per clip)."""
    digest = sha256_json({"render": render_id, "plot": index})
    return f"{UMID_PREFIX}.{digest[:8]}.{digest[8:12]}.{digest[12:16]}.{digest[16:32]}"


def reel_name(render_id: str, index: int, limit: int | None) -> str:
    """A reel unique to the render and plot: render id prefix + P + plot number (e.g. 4150P001)."""
    plot = f"P{index + 1:03d}"
    prefix = re.sub(r"[^A-Za-z0-9]", "", render_id).upper()
    keep = len(prefix) if limit is None else max(0, limit - len(plot))
    return prefix[:keep] + plot


def clip_name(record: PlotRecord) -> str:
    """The clip's full name: plot number and text (formats shorten it to their limits)."""
    return f"plot {record.index + 1}: {record.text}"


def build_timeline(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    delivery: Delivery,
    render_id: str | None = None,
    record_start: str = RECORD_START,
    extra_metadata: Mapping[str, Any] | None = None,
) -> otio.schema.Timeline:
    """One video track, one clip per plot in plot order, each on its delivered file."""
    out = Path(out_dir).resolve()
    rate = float(delivery.fps)
    start = timecode_frames(record_start, delivery.fps)
    timeline = otio.schema.Timeline(
        name=story.title,
        global_start_time=otio.opentime.RationalTime(start, rate),
        metadata={
            "story": _json_safe(
                {
                    "title": story.title,
                    "render_id": render_id,
                    "source": story.source,
                    "delivery": delivery.record(),
                    "record_start": record_start,
                    **(extra_metadata or {}),
                }
            )
        },
    )
    track = otio.schema.Track(name=TRACK_NAME, kind=otio.schema.TrackKind.Video)
    for record in sorted(records, key=lambda r: r.index):
        delivered = record.delivered
        if delivered is None:
            raise AssemblyError(
                f"{out}: plot {record.index} has no delivered video to put on the timeline"
            )
        available = otio.opentime.TimeRange(
            start_time=otio.opentime.RationalTime(0, rate),
            duration=otio.opentime.RationalTime(delivered.frames, rate),
        )
        url = Path(os.path.relpath(Path(delivered.video_path).resolve(), out)).as_posix()
        clip = otio.schema.Clip(
            name=clip_name(record),
            media_reference=otio.schema.ExternalReference(
                target_url=url, available_range=available
            ),
            source_range=available,
            metadata={
                "story": plot_lineage(record),
                "AAF": {"MobID": mob_id(render_id, record.index)},
                "cmx_3600": {"reel": reel_name(render_id or "", record.index, EDL_REEL)},
            },
        )
        track.append(clip)
    timeline.tracks.append(track)
    return timeline


def write_timeline(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    delivery: Delivery,
    render_id: str | None = None,
) -> Path:
    """Write `out_dir/timeline.otio` atomically and return its path."""
    out = Path(out_dir)
    timeline = build_timeline(out, story, records, delivery, render_id)
    return write_atomic(out / TIMELINE, otio.adapters.write_to_string(timeline, "otio_json"))
