"""Fault-suite helpers: the committed bad media files and a recorder for the faults table.

Every fault test records `case / expected / observed / held` rows as junit-xml properties
(`record_property("fault", json)`), so `python -m bench.faults` can print the table from a
normal pytest run without a second implementation of the checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_FILES = REPO / "tests" / "test_files"
STORIES = TEST_FILES / "stories"

Recorder = Callable[..., bool]


class DiesOnce:
    """A worker whose first call anywhere kills its own process, as an OOM kill would."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def process(self, item: int) -> tuple[int, int]:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return item, os.getpid()
        os.write(fd, str(item).encode())
        os.close(fd)
        os._exit(1)


def child_env() -> dict[str, str]:
    """The child reports to this session's Prefect test server instead of starting its own."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PYTHONPATH=str(REPO))
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


def tree_snapshot(root: Path) -> set[str]:
    """Every file and folder under `root` (not following symlinks)."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        found.update(os.path.join(folder, name) for name in dirs + files)
    return found


@pytest.fixture
def fault(record_property: Callable[[str, object], None]) -> Recorder:
    """Record one row of the faults table; held defaults to observed == expected."""

    def record(case: str, expected: str, observed: str, held: bool | None = None) -> bool:
        held = expected == observed if held is None else held
        row = {"case": case, "expected": expected, "observed": observed, "held": held}
        record_property("fault", json.dumps(row))
        return held

    return record
