"""What every flow takes as `settings`: a Settings object, a dict of settings, or nothing.

The CLI passes its Settings object as is; a deployment passes JSON (or null: the worker's
`STORY_*` environment); either way a flow turns it into Settings once, here, and hands that
object on to steps and workers.
"""

from __future__ import annotations

from typing import Any

from story.tasks.settings import Settings

SettingsParam = Settings | dict[str, Any] | None


def as_settings(value: SettingsParam) -> Settings:
    """The Settings a flow runs with: as given, or from a dict / the environment."""
    if isinstance(value, Settings):
        return value
    return Settings(**(value or {}))
