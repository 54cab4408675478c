"""Fault-suite helpers: the committed bad media files and a recorder for the faults table.

Every fault test records `case / expected / observed / held` rows as junit-xml properties
(`record_property("fault", json)`), so `python -m bench.faults` can print the table from a
normal pytest run without a second implementation of the checks.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_FILES = REPO / "tests" / "test_files"
STORIES = TEST_FILES / "stories"

Recorder = Callable[..., bool]


def media_maker() -> ModuleType:
    """tests/test_files/make_test_files.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_test_files", TEST_FILES / "make_test_files.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_snapshot(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    """Every file and folder under `root` (not following symlinks), minus the `skip` subtrees."""
    skipped = {str(s) for s in skip}
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skipped]
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
