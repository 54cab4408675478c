"""The concept error, torch-free so name lookups and the CLI can raise it without loading torch."""

from __future__ import annotations

from story.tasks.errors import StoryError


class ConceptError(StoryError, ValueError):
    """A concept's images, pack, name or method cannot be used; the message names which."""
