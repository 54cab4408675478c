"""Output files written whole or not at all (through `story.tasks.atomic`), errors named."""

from __future__ import annotations

import os
from pathlib import Path

from story.tasks.atomic import write_bytes
from story.tasks.outputs.errors import AssemblyError


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Replace `path` with `data` atomically; a failure is an AssemblyError naming the file."""
    try:
        return write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise AssemblyError(f"{Path(path)}: cannot write: {exc.strerror or exc}") from exc
