"""The outputs' error type: frames, videos, pages or exports that cannot be written or read."""

from __future__ import annotations

from story.tasks.errors import StoryError


class AssemblyError(StoryError):
    """Frames or videos that cannot be assembled or exported: names the file and the problem."""
