"""Clip manifests in JSONL, CSV and parquet: parsing, URI resolution and errors naming the line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from story.tasks.errors import ManifestError
from story.tasks.library.manifest import ManifestRow, read_manifest

RECORDS = [
    {
        "uri": "media/a.mp4",
        "caption": "a red ball rolls left",
        "start": 0.5,
        "end": 2.0,
        "source": "mini",
        "license": "CC0",
        "shot_notes": "ignored",
    },
    {
        "uri": "/abs/b.mp4",
        "caption": "a cat",
        "start": None,
        "end": None,
        "source": "",
        "license": "",
    },
    {"uri": "s3://bucket/c.mp4", "caption": "", "start": 1.0, "end": None, "source": "studio"},
    {"uri": "file:///tmp/d%20e.mp4", "caption": "d", "start": None, "end": 3.0},
]


def _write(path: Path, records: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".csv":
        columns = list(dict.fromkeys(k for r in records for k in r))
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_format_gives_the_same_rows(tmp_path: Path, suffix: str) -> None:
    rows = read_manifest(_write(tmp_path / f"clips{suffix}", RECORDS))
    first_line = 2 if suffix == ".csv" else 1
    assert rows == [
        ManifestRow(
            str(tmp_path / "media" / "a.mp4"),
            "a red ball rolls left",
            0.5,
            2.0,
            "mini",
            "CC0",
            first_line,
        ),
        ManifestRow("/abs/b.mp4", "a cat", None, None, "", "", first_line + 1),
        ManifestRow("s3://bucket/c.mp4", "", 1.0, None, "studio", "", first_line + 2),
        ManifestRow("/tmp/d e.mp4", "d", None, 3.0, "", "", first_line + 3),
    ]


def test_relative_uris_resolve_against_the_manifest_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    _write(folder / "m.jsonl", [{"uri": "../media/x.mp4"}, {"uri": "clips/y.mp4"}])
    monkeypatch.chdir(tmp_path)
    rows = read_manifest("library/m.jsonl")
    assert [r.uri for r in rows] == [
        str(tmp_path / "media" / "x.mp4"),
        str(folder / "clips" / "y.mp4"),
    ]
    assert all(Path(r.uri).is_absolute() for r in rows)


def test_relative_uris_in_an_object_store_manifest_stay_in_the_bucket(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("memory://lib/sets/m.jsonl", b'{"uri": "clips/a.mp4"}\n{"uri": "../b.mp4"}\n')
    try:
        rows = read_manifest("memory://lib/sets/m.jsonl")
    finally:
        fs.rm("memory://lib", recursive=True)
    assert [r.uri for r in rows] == ["memory://lib/sets/clips/a.mp4", "memory://lib/b.mp4"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_empty_manifest_is_an_empty_list(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"uri": pa.array([], pa.string())}), path)
    else:
        path.write_text("")
    assert read_manifest(path) == []


def test_blank_jsonl_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('\n{"uri": "a.mp4"}\n\n{"uri": "b.mp4"}\n')
    assert [r.line for r in read_manifest(path)] == [2, 4]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"caption": "no uri here"}, "missing uri"),
        ({"uri": "  "}, "missing uri"),
        ({"uri": "a.mp4", "start": 3.0, "end": 2.0}, "start (3) is not before end (2)"),
        ({"uri": "a.mp4", "start": 2.0, "end": 2.0}, "start (2) is not before end (2)"),
        ({"uri": "a.mp4", "start": -1.0}, "start is negative"),
    ],
)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_bad_row_names_the_file_and_line(
    tmp_path: Path, suffix: str, record: dict, problem: str
) -> None:
    good = {"uri": "ok.mp4", "caption": "fine", "start": 0.0, "end": 1.0}
    records = [good, good, {**{k: None for k in good}, **record}]
    path = _write(tmp_path / f"bad{suffix}", records)
    line = 4 if suffix == ".csv" else 3
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_text_where_seconds_belong_names_the_line(tmp_path: Path, suffix: str) -> None:
    path = _write(
        tmp_path / f"m{suffix}", [{"uri": "a.mp4", "end": 1}, {"uri": "b.mp4", "end": "soon"}]
    )
    with pytest.raises(ManifestError, match=r"m\.(jsonl|csv):[23]: end is not a number: 'soon'"):
        read_manifest(path)


def test_jsonl_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"uri": "a.mp4"}\n{"uri": "b.mp4",\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: invalid JSON"):
        read_manifest(path)
    path.write_text('{"uri": "a.mp4"}\n["b.mp4"]\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: expected a JSON object"):
        read_manifest(path)


def test_non_utf8_text_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"uri,caption\na.mp4,fine\nb.mp4,caf\xe9\n")
    with pytest.raises(ManifestError, match=r"m\.csv:3: not UTF-8"):
        read_manifest(path)


def test_csv_without_a_uri_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,caption\na.mp4,x\n")
    with pytest.raises(ManifestError, match=r"m\.csv:1: no 'uri' column"):
        read_manifest(path)


def test_unreadable_manifests_are_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="unsupported manifest format '.txt'"):
        read_manifest(tmp_path / "clips.txt")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ManifestError, match="cannot read parquet"):
        read_manifest(broken)
