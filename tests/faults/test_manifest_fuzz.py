"""Clip manifests at volume (hypothesis, fixed budget, derandomized so CI sees the same cases):
JSONL, CSV and parquet with hostile values either read into rows or fail with one
`ManifestError` naming the file and a line it has; nothing else ever leaves the reader."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from story.tasks.errors import ManifestError
from story.tasks.library.manifest import read_manifest
from tests.faults.conftest import Recorder

BUDGET = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FIELDS = ("uri", "caption", "start", "end", "source", "license")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
good_record = st.fixed_dictionaries(
    {"uri": st.sampled_from(["media/a.mp4", "s3://bucket/b.mp4", "/abs/c.mp4"])},
    optional={
        "caption": st.text(max_size=40),
        "start": st.floats(min_value=0, max_value=10),
        "end": st.floats(min_value=10.5, max_value=20),
    },
)
hostile_record = st.dictionaries(st.sampled_from(FIELDS + ("extra",)), json_values, max_size=6)
line_text = st.one_of(
    good_record.map(json.dumps),
    hostile_record.map(lambda r: json.dumps(r, allow_nan=True)),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
cell = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "nan", "inf", "-1", "1e400", '"', "a,b", "x\ny", "\x00", "\ufeff"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _read(path: Path) -> tuple[int, ManifestError | None]:
    """(rows read, the error) for one manifest: only ManifestError may escape the reader."""
    try:
        return len(read_manifest(path)), None
    except ManifestError as error:
        return 0, error


def _check(path: Path, error: ManifestError | None, lines: int) -> None:
    if error is None:
        return
    assert error.path == str(path), error
    assert str(error).startswith(f"{path}:") or str(error).startswith(f"{path}: "), error
    if error.line is not None:
        assert 1 <= error.line <= max(lines, 1), (error, lines)


def _lines_in(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


@BUDGET
@given(lines=st.lists(line_text, max_size=8), raw=st.booleans(), junk=st.binary(max_size=60))
def jsonl_case(lines: list[str], raw: bool, junk: bytes) -> None:
    data = junk if raw else "\n".join(lines).encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clips.jsonl"
        path.write_bytes(data)
        _, error = _read(path)
        _check(path, error, _lines_in(data))


@BUDGET
@given(
    header=st.lists(st.sampled_from(FIELDS + ("", "uri ", "URI")), min_size=1, max_size=6),
    rows=st.lists(st.lists(cell, max_size=7), max_size=6),
    junk=st.binary(max_size=20),
)
def csv_case(header: list[str], rows: list[list[str]], junk: bytes) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8", "surrogatepass") + junk
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clips.csv"
        path.write_bytes(data)
        _, error = _read(path)
        _check(path, error, _lines_in(data))


parquet_column = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=3, max_size=3),
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=3, max_size=3
    ),
    st.lists(st.integers(min_value=-(2**62), max_value=2**62), min_size=3, max_size=3),
    st.lists(st.binary(max_size=8), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(0, 9), max_size=2), min_size=3, max_size=3),
)


@BUDGET
@given(
    columns=st.dictionaries(st.sampled_from(FIELDS), parquet_column, min_size=1),
    truncate=st.integers(min_value=0, max_value=3),
)
def parquet_case(columns: dict[str, list[Any]], truncate: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clips.parquet"
        pq.write_table(pa.table(columns), path)
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * truncate // 4])
        _, error = _read(path)
        _check(path, error, 3)


@pytest.mark.parametrize(
    ("kind", "case"), [("JSONL", jsonl_case), ("CSV", csv_case), ("parquet", parquet_case)]
)
def test_fuzzed_manifests_fail_only_with_a_clear_error(
    kind: str, case: Callable[[], None], fault: Recorder
) -> None:
    expected = "only ManifestError, naming the file and a line it has"
    try:
        case()
    except Exception as exc:
        fault(f"manifest fuzz: {kind}", expected, f"{type(exc).__name__}: {exc}"[:300])
        raise
    fault(f"manifest fuzz: {kind} ({BUDGET.max_examples} derandomized cases)", expected, expected)
