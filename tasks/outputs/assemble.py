"""Assembly: every render output but the manifest, from what each plot produced.

A render folder holds the model's frames per plot (`plots/`, at the model's rate: what the
manifest's `frames_sha256` pin), the same plots delivered at the editorial rate
(`delivery/`, retimed by `retime.py`), `story.mp4` (the delivered plots in order), poster
frames and a contact sheet, `storyboard.html` and `timeline.otio` (on the delivered files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.hashing import sha256_file
from story.tasks.outputs.delivery import Delivery, delivered_spans, source_positions
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import check_frames, letterbox, side_by_side
from story.tasks.outputs.plot_record import DeliveredPlot, PlotRecord
from story.tasks.outputs.retime import retime
from story.tasks.outputs.stills import write_stills
from story.tasks.outputs.storyboard import write_storyboard
from story.tasks.outputs.timecode import RECORD_START, frames_timecode, timecode_frames
from story.tasks.outputs.timeline import write_timeline
from story.tasks.outputs.video_io import Mp4Writer, write_mp4
from story.tasks.script.story import Story

STORY_VIDEO = "story.mp4"
PLOTS_DIR = "plots"
DELIVERY_DIR = "delivery"


def plot_video_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """Where a plot's mp4 (model frames) lives inside a render folder."""
    return Path(out_dir) / PLOTS_DIR / f"plot_{index:03d}.mp4"


def delivered_video_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """Where a plot's delivered mp4 (editorial rate) lives inside a render folder."""
    return Path(out_dir) / DELIVERY_DIR / f"plot_{index:03d}.mp4"


def _composite(clips: list[np.ndarray]) -> np.ndarray:
    return clips[0] if len(clips) == 1 else side_by_side(clips)


def _even_size(frames: np.ndarray) -> tuple[int, int]:
    height, width = frames.shape[1:3]
    return height + height % 2, width + width % 2


def deliver(
    out_dir: Path, records: Sequence[PlotRecord], model_fps: float, delivery: Delivery
) -> list[DeliveredPlot]:
    """Write every plot at the delivery rate and `story.mp4` from the same frames.

    Sets and returns each record's `delivered`; the model's frames are left as they are.
    """
    spans = delivered_spans([r.frame_count for r in records], model_fps, delivery.fps)
    before = 0
    with Mp4Writer(out_dir / STORY_VIDEO, delivery.fps) as story_video:
        size: tuple[int, int] | None = None
        for record, span in zip(records, spans, strict=True):
            positions = source_positions(span, before, record.frame_count, model_fps, delivery.fps)
            before += record.frame_count
            frames = _composite([retime(c, positions, delivery.retime) for c in record.candidates])
            path = delivered_video_path(out_dir, record.index)
            write_mp4(path, frames, delivery.fps)
            record.delivered = DeliveredPlot(path, span[0], len(frames), sha256_file(path))
            size = size or _even_size(frames)
            for frame in frames:
                story_video.write(letterbox(frame, size))
    return [record.delivered for record in records if record.delivered is not None]


def write_outputs(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    fps: float,
    render_id: str | None = None,
    delivery: Delivery | None = None,
) -> dict[str, Any]:
    """Write every render output but the manifest. Records without a video get one at
    `plot_video_path` (model frames at `fps`, candidates side by side); all are delivered at
    `delivery` (default 24 fps). Returns the paths, relative to `out_dir`, for the manifest."""
    out = Path(out_dir)
    delivery = delivery or Delivery()
    ordered = sorted(records, key=lambda r: r.index)
    if not ordered:
        raise AssemblyError(f"{out}: no plots to assemble")
    for record in ordered:
        if record.video_path is None:
            record.video_path = plot_video_path(out, record.index)
            frames = _composite(record.candidates)
            write_mp4(record.video_path, check_frames(frames, str(record.video_path)), fps)
    delivered = deliver(out, ordered, fps, delivery)
    start = timecode_frames(RECORD_START, delivery.fps)
    timecodes = {
        record.index: (
            frames_timecode(start + plot.first_frame, delivery.fps),
            frames_timecode(start + plot.first_frame + plot.frames, delivery.fps),
        )
        for record, plot in zip(ordered, delivered, strict=True)
    }
    stills = write_stills(
        out,
        [_composite(r.candidates) for r in ordered],
        [f"plot {r.index + 1}  {timecodes[r.index][0]}" for r in ordered],
        [f"plot_{r.index:03d}" for r in ordered],
    )
    total = sum(plot.frames for plot in delivered)
    summary = {
        **delivery.record(),
        "record_in": RECORD_START,
        "record_out": frames_timecode(start + total, delivery.fps),
    }
    storyboard = write_storyboard(
        out,
        story,
        ordered,
        render_id=render_id,
        stills=stills,
        delivery=summary,
        timecodes=timecodes,
    )
    timeline = write_timeline(out, story, ordered, delivery, render_id=render_id)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()

    return {
        "video": STORY_VIDEO,
        "storyboard": rel(storyboard),
        "timeline": rel(timeline),
        "plots": [rel(r.video_path) for r in ordered if r.video_path is not None],
        "delivered_plots": [rel(plot.video_path) for plot in delivered],
        "poster": stills["poster"],
        "contact_sheet": stills["contact_sheet"],
    }
