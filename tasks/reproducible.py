"""What a reproducible build writes differently: `SOURCE_DATE_EPOCH` set means "same bytes".

`SOURCE_DATE_EPOCH` (seconds since 1970, the reproducible-builds convention) pins the
timestamps a build writes into its data (a clip row's `ingested_at`, a render manifest's
`created`), drops what depends on the run rather than the inputs (a manifest's `timings`, whether
a shot came from the cache) and writes paths inside the checkout relative to it (as compilers'
`-ffile-prefix-map` does), so two clones building the same inputs write the same bytes. DVC
stages set it; an interactive run leaves it unset and records time, cache hits and full paths.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from story.tasks.errors import StoryError

ENV = "SOURCE_DATE_EPOCH"


def stamp_time() -> datetime:
    """`SOURCE_DATE_EPOCH` as a UTC datetime when set, else the current UTC time."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise StoryError(f"{ENV}={value!r}: not a whole number of seconds since 1970") from exc


def reproducible_build() -> bool:
    """Whether `SOURCE_DATE_EPOCH` asks for output that does not depend on when it ran."""
    return bool(os.environ.get(ENV, "").strip())


def relative_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """An absolute `path` relative to `root` when it is `root` or lies under it, else None: how
    outputs name a file without naming the machine (the checkout, a manifest's folder)."""
    normal, top = os.path.normpath(path), os.path.normpath(root)
    if normal == top or normal.startswith(top.rstrip(os.sep) + os.sep):
        return Path(os.path.relpath(normal, top)).as_posix()
    return None


def recorded_path(path: str) -> str:
    """`path` as an output records it: relative to the checkout in a reproducible build when it
    lies inside it, else as given."""
    from story.tasks.settings import REPO_ROOT

    if not reproducible_build() or not os.path.isabs(path):
        return path
    return relative_inside(path, REPO_ROOT) or path
