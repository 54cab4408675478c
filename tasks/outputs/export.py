"""Editorial export: a render's timeline through OpenTimelineIO's own adapters.

`export_render(folder, fmt)` reads the render's `timeline.otio` and `manifest.json` and writes
OTIO JSON, an OTIOZ bundle (media inside), a CMX 3600 EDL, FCP 7 XML or AAF with the adapter
plug-ins (otio-cmx3600-adapter, otio-fcp-adapter, otio-aaf-adapter); nothing here writes a
format itself. Before an adapter runs, the timeline is fitted to the format:
- the record start (default 01:00:00:00) as `global_start_time`; for the EDL, as the track
  offset the CMX adapter reads and writes;
- reel and clip names inside the format's limits (NameLimits) and character set;
- media references as absolute file URLs (relative to the written file for OTIO JSON);
- lineage (render id, clip id, checkpoint, concept versions, seed) where the format has room:
  OTIO metadata, EDL comment lines, FCP XML logging info / comments and a marker per clip,
  AAF user comments on each master clip.
"""

from __future__ import annotations

import copy
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from story.tasks.atomic import atomic_path
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.render_folder import load_render_timeline
from story.tasks.outputs.timecode import RECORD_START, timecode_frames
from story.tasks.outputs.timeline import reel_name

EDITORIAL_DIR = "editorial"


@dataclass(frozen=True)
class NameLimits:
    """How long reel and clip names may be in a format, and whether they must be ASCII."""

    reel: int | None
    clip: int | None
    ascii_only: bool


@dataclass(frozen=True)
class ExportFormat:
    """One editorial format: the OTIO adapter that writes it, its file suffix, its limits."""

    adapter: str
    suffix: str
    names: NameLimits


FORMATS: dict[str, ExportFormat] = {
    "otio": ExportFormat("otio_json", ".otio", NameLimits(None, None, False)),
    "otioz": ExportFormat("otioz", ".otioz", NameLimits(None, None, False)),
    # CMX 3600: 8-character reels of letters and digits; a clip name line fits 80 columns.
    "edl": ExportFormat("cmx_3600", ".edl", NameLimits(8, 60, True)),
    "fcp_xml": ExportFormat("fcp_xml", ".xml", NameLimits(None, 64, False)),
    # Avid takes clip and tape names of up to 32 characters.
    "aaf": ExportFormat("AAF", ".aaf", NameLimits(32, 32, True)),
}


def fit_name(text: str, limit: int | None, ascii_only: bool) -> str:
    """`text` on one line, ASCII when asked, cut to `limit` characters (an ellipsis marks it)."""
    name = " ".join(str(text).split())
    if ascii_only:
        name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    if limit is not None and len(name) > limit:
        name = name[: limit - 3].rstrip() + "..."
    return name


def clip_lineage(manifest: Mapping[str, Any], plot: Mapping[str, Any]) -> dict[str, Any]:
    """What editorial may want to trace a shot back to: render, clip, checkpoint, concepts, seed."""
    inputs = manifest.get("inputs", {})
    checkpoint = inputs.get("checkpoint") or {}
    versions = inputs.get("concepts") or {}
    return {
        "render_id": manifest["render_id"],
        "plot": int(plot["index"]) + 1,
        "clip_id": plot.get("clip_id"),
        "checkpoint": checkpoint.get("name"),
        "checkpoint_sha256": checkpoint.get("sha256"),
        "concepts": {name: versions.get(name) for name in plot.get("concepts", [])},
        "seed": plot.get("seed"),
    }


def lineage_lines(lineage: Mapping[str, Any]) -> list[str]:
    """Lineage as short `KEY: value` lines (hashes cut to 16 hex digits)."""
    concepts = ", ".join(
        f"{name}@{(sha or '?')[:16]}" for name, sha in sorted(lineage["concepts"].items())
    )
    checkpoint = f"{lineage['checkpoint']}@{(lineage['checkpoint_sha256'] or '?')[:16]}"
    return [
        f"STORY RENDER: {lineage['render_id']}",
        f"STORY CLIP ID: {lineage['clip_id']}",
        f"STORY CHECKPOINT: {checkpoint}",
        f"STORY CONCEPTS: {concepts or 'none'}",
        f"STORY SEED: {lineage['seed']}",
    ]


def _point_media(timeline: otio.schema.Timeline, folder: Path, fmt: str, written: Path) -> None:
    """Media references as the format's readers find them: relative to the written file for
    OTIO JSON, a plain path for the EDL's FROM CLIP comment, a file URL elsewhere."""
    for clip in timeline.find_clips():
        reference = clip.media_reference
        if not isinstance(reference, otio.schema.ExternalReference):
            continue
        media = (folder / reference.target_url).resolve()
        if not media.is_file():
            raise AssemblyError(f"{media}: the media of {clip.name!r} is missing")
        if fmt == "otio":
            reference.target_url = Path(os.path.relpath(media, written.parent.resolve())).as_posix()
        elif fmt == "edl":
            reference.target_url = str(media)
        else:
            reference.target_url = media.as_uri()


def _fit(
    timeline: otio.schema.Timeline,
    manifest: Mapping[str, Any],
    fmt: str,
    start: otio.opentime.RationalTime,
) -> otio.schema.Timeline:
    """A copy of the timeline fitted to `fmt`: names, lineage, record start."""
    spec = FORMATS[fmt]
    fitted = copy.deepcopy(timeline)
    fitted.global_start_time = start
    fitted.name = fit_name(timeline.name, spec.names.clip, spec.names.ascii_only)
    plots = {int(p["index"]): p for p in manifest["plots"]}
    for clip in fitted.find_clips():
        index = int(clip.metadata["story"]["index"])
        lineage = clip_lineage(manifest, plots[index])
        clip.metadata["story"] = {**clip.metadata["story"], "lineage": lineage}
        clip.name = fit_name(clip.name, spec.names.clip, spec.names.ascii_only)
        lines = lineage_lines(lineage)
        reel = reel_name(manifest["render_id"], index, spec.names.reel)
        if fmt == "edl":
            clip.metadata["cmx_3600"] = {"reel": reel, "comments": lines}
        elif fmt == "fcp_xml":
            clip.metadata["fcp_xml"] = {
                "logginginfo": {"scene": f"plot {index + 1}", "lognote": " | ".join(lines)},
                "comments": {f"mastercomment{n + 1}": line for n, line in enumerate(lines[:4])},
            }
            clip.markers.append(
                otio.schema.Marker(
                    name=f"plot {index + 1}",
                    marked_range=otio.opentime.TimeRange(
                        clip.source_range.start_time,
                        otio.opentime.RationalTime(1, start.rate),
                    ),
                    metadata={"fcp_xml": {"comment": " | ".join(lines)}},
                )
            )
        elif fmt == "aaf":
            aaf = dict(clip.metadata.get("AAF", {}))
            aaf["UserComments"] = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines}
            aaf["UserComments"]["STORY REEL"] = reel
            clip.metadata["AAF"] = aaf
    if fmt == "edl":
        # The CMX adapter reads a record start as a negative offset of the track and writes
        # record timecodes through it.
        (track,) = fitted.tracks
        track.source_range = otio.opentime.TimeRange(-start, track.duration())
    return fitted


def export_render(
    folder: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str] | None = None,
    record_start: str = RECORD_START,
) -> dict[str, Any]:
    """Write a render's cut in `fmt`; returns what was written and the cut's shape."""
    if fmt not in FORMATS:
        raise AssemblyError(f"export format {fmt!r}: one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    root = Path(folder)
    timeline, manifest, delivery = load_render_timeline(root)
    rate = float(delivery.fps)
    start = otio.opentime.RationalTime(timecode_frames(record_start, delivery.fps), rate)
    target = Path(out) if out else root / EDITORIAL_DIR / f"cut{spec.suffix}"
    fitted = _fit(timeline, manifest, fmt, start)
    _point_media(fitted, root, fmt, target)
    options = {"rate": rate} if fmt == "edl" else {}
    try:
        with atomic_path(target) as partial:
            otio.adapters.write_to_file(fitted, str(partial), adapter_name=spec.adapter, **options)
    except OSError as exc:
        raise AssemblyError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    except Exception as exc:  # an adapter's own error: name the file and the adapter
        raise AssemblyError(f"{target}: the {spec.adapter} adapter failed: {exc}") from exc
    clips = list(fitted.find_clips())
    return {
        "render_id": manifest["render_id"],
        "format": fmt,
        "adapter": spec.adapter,
        "path": str(target),
        "clips": len(clips),
        "rate": delivery.rate,
        "fps": f"{Fraction(delivery.fps).numerator}/{Fraction(delivery.fps).denominator}",
        "record_start": record_start,
        "duration_frames": int(fitted.duration().to_frames()),
    }
