"""The time written into outputs: now, or `SOURCE_DATE_EPOCH` for a reproducible build.

`SOURCE_DATE_EPOCH` (seconds since 1970, the reproducible-builds convention) pins the
timestamps a build writes into its data (a clip row's `ingested_at`, a render manifest's
`created`) and drops the durations it would record (a manifest's `timings`), so building the
same inputs twice gives the same bytes. DVC stages set it; an interactive run leaves it unset
and records the real time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

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
