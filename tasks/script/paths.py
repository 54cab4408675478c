"""Paths a script or manifest names: relative, and resolved only inside their root."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.script.story import StoryScriptError


def safe_relpath(value: Any, field: str, path: str | Path, line: int) -> str:
    """A relative path that stays inside its root: no absolute path, `~`, URL, `..` or NUL."""
    if not isinstance(value, str) or not value.strip():
        raise StoryScriptError(path, line, f"{field} must be a relative path, got {value!r}")
    text = value.strip()
    if "\0" in text or "\\" in text:
        raise StoryScriptError(path, line, f"{field} {text!r}: backslashes and NUL are refused")
    if text.startswith(("/", "~")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text):
        raise StoryScriptError(
            path, line, f"{field} {text!r} must be relative to the workspace (no absolute paths)"
        )
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise StoryScriptError(path, line, f"{field} {text!r} must not climb out with '..'")
    return PurePosixPath(*parts).as_posix()


def resolve_within(root: str | Path, relpath: str) -> Path:
    """Join a checked relative path to its root and refuse results (symlinks too) outside it."""
    base = Path(root).resolve()
    target = (base / relpath).resolve()
    if not target.is_relative_to(base):
        raise StoryError(f"{relpath!r} resolves to {target}, outside {base}")
    return target
