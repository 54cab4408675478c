"""Review proxies: a render's delivered cut at a set width, with plot, timecode and render burnt in.

Model frames are small (32 pixels wide for the bundled model); a review copy scales every
delivered frame to `width` with a chosen resampling filter, letterboxes plots of another aspect,
and burns in the plot number (top left), the render id (top right) and the record timecode
(bottom right), so notes from a review session point at an exact frame of the cut.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from story.tasks.outputs.burn_in import BOTTOM_RIGHT, TOP_LEFT, TOP_RIGHT, burn_text
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import letterbox, resize, size_for_width
from story.tasks.outputs.render_folder import load_render_timeline
from story.tasks.outputs.stills import RESAMPLING
from story.tasks.outputs.timecode import frames_timecode
from story.tasks.outputs.video_io import Mp4Writer, iter_mp4

PROXY_ENCODER = {"crf": "20", "preset": "fast", "threads": "1"}
PROXY_WIDTHS = (256, 512, 1024, 1920)


def proxy_path(folder: str | os.PathLike[str], width: int) -> Path:
    """Where a render's review proxy at `width` goes by default."""
    return Path(folder) / "editorial" / f"review_w{width}.mp4"


def write_proxy(
    folder: str | os.PathLike[str],
    width: int = 1024,
    resampling: str = RESAMPLING,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write the review copy of a render's cut; returns where, its size and frame count."""
    if width < 16 or width > 8192:
        raise AssemblyError(f"proxy width {width}: choose 16..8192 pixels (e.g. 512 or 1024)")
    root = Path(folder)
    timeline, manifest, delivery = load_render_timeline(root)
    target = Path(out) if out else proxy_path(root, width)
    start = int(timeline.global_start_time.value) if timeline.global_start_time else 0
    render_id = str(manifest["render_id"])
    size: tuple[int, int] | None = None
    with Mp4Writer(target, delivery.fps, PROXY_ENCODER) as writer:
        for clip in timeline.find_clips():
            media = root / clip.media_reference.target_url
            record_in = int(clip.range_in_parent().start_time.value)
            number = int(clip.metadata["story"]["index"]) + 1
            for offset, frame in enumerate(iter_mp4(media)):
                size = size or size_for_width(frame.shape, width)
                scaled = letterbox(
                    resize(frame, size_for_width(frame.shape, width), resampling), size
                )
                timecode = frames_timecode(start + record_in + offset, delivery.fps)
                scaled = burn_text(scaled, f"PLOT {number}", TOP_LEFT)
                scaled = burn_text(scaled, render_id, TOP_RIGHT)
                writer.write(burn_text(scaled, timecode, BOTTOM_RIGHT))
        frames = writer.frames
    return {
        "render_id": render_id,
        "path": str(target),
        "width": size[1] if size else width,
        "height": size[0] if size else 0,
        "frames": frames,
        "rate": delivery.rate,
        "resampling": resampling,
    }
