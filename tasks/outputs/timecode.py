"""SMPTE timecode at a delivery rate: record starts parsed, frames shown as HH:MM:SS:FF."""

from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio

from story.tasks.outputs.errors import AssemblyError

RECORD_START = "01:00:00:00"
"""Where a cut starts on the record side, as editorial conventionally begins a reel."""


def timecode_frames(timecode: str, fps: Fraction) -> int:
    """Frames from 00:00:00:00 to `timecode` (non-drop) at `fps`; AssemblyError when malformed."""
    try:
        return int(otio.opentime.from_timecode(timecode, float(fps)).value)
    except ValueError as exc:
        raise AssemblyError(f"timecode {timecode!r} at {float(fps):g} fps: {exc}") from exc


def frames_timecode(frames: int, fps: Fraction) -> str:
    """A frame count as non-drop HH:MM:SS:FF at `fps`."""
    return otio.opentime.RationalTime(frames, float(fps)).to_timecode(float(fps))
