"""Fuzzed manifests ingested into a library that already holds clips (hypothesis, fixed budget,
derandomized): a manifest either fails as a whole with a `ManifestError` before anything is
written, or every row is indexed or quarantined with its reason, and no clip already in the
library is lost or changed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from story.tasks.errors import ManifestError
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest import ClipIngestor, make_shards
from story.tasks.library.manifest import read_manifest
from story.tasks.outputs.video_io import write_mp4
from tests.faults.conftest import Recorder

BUDGET = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
INGEST = {"motion_model": "none", "shape_model": "none", "video_text_model": "none"}


def _media(folder: Path) -> dict[str, Path]:
    """Two decodable clips, an empty file and a text file posing as video."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = {}
    for name in ("a", "b"):
        frames = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
        write_mp4(folder / f"{name}.mp4", frames, 8)
        good[name] = folder / f"{name}.mp4"
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video\n")
    return {**good, "empty": folder / "empty.mp4", "text": folder / "text.mp4"}


uri_choice = st.sampled_from(["a", "b", "empty", "text", "missing", "s3-like", "dir"])
# Mostly plausible records, so most manifests get past the reader and reach ingest.
hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 50), st.text(max_size=4)
)


def _record(start: st.SearchStrategy, end: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"uri": uri_choice},
        optional={
            "caption": st.one_of(st.text(max_size=30), st.integers(), st.none()),
            "start": start,
            "end": end,
            "source": st.one_of(st.text(max_size=8), st.none()),
        },
    ).map(lambda r: ("record", r))


plausible = _record(st.floats(min_value=0, max_value=1), st.floats(min_value=1.5, max_value=3))
line = st.one_of(
    plausible,
    _record(hostile, hostile),
    st.text(max_size=20).map(lambda t: ("raw", t)),
)
manifest_lines = st.one_of(
    st.lists(plausible, min_size=1, max_size=6), st.lists(line, min_size=1, max_size=6)
)


def _uri(choice: str, media: dict[str, Path], folder: Path) -> str:
    return {
        "missing": str(folder / "missing.mp4"),
        "s3-like": "media/../../nowhere.mp4",
        "dir": str(folder),
    }.get(choice) or str(media[choice])


def _stored(index: ClipIndex) -> dict[str, tuple[Any, ...]]:
    rows = index.rows()
    return {
        r["clip_id"]: (r["uri"], r["caption"], float(r["start"]), float(r["end"]))
        for _, r in rows.iterrows()
    }


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClipIngestor, Path, dict]:
    root = tmp_path_factory.mktemp("fuzz-library")
    media = _media(root / "media")
    ingestor = ClipIngestor(INGEST)
    return ingestor, root, media


def test_fuzzed_manifests_lose_nothing_from_the_library(library, fault: Recorder) -> None:
    ingestor, root, media = library
    expected = "all-or-nothing ManifestError, else every row indexed or quarantined; no clip lost"
    outcomes = {"rejected": 0, "ingested": 0, "indexed": 0, "quarantined": 0}

    @BUDGET
    @given(lines=manifest_lines)
    def case(lines: list[tuple[str, Any]]) -> None:
        with tempfile.TemporaryDirectory(dir=root) as folder:
            db = Path(folder) / "lancedb"
            index = ClipIndex(str(db), text_dim=ingestor.text_encoder.dim)
            seed = read_manifest(_write(Path(folder) / "seed.jsonl", [("record", {"uri": "a"})]))
            index.add(ingestor.process(make_shards(seed, 8)[0]).rows)
            before = _stored(index)
            path = _write(Path(folder) / "fuzz.jsonl", lines, media, Path(folder))
            try:
                rows = read_manifest(path)
            except ManifestError as error:
                assert error.path == str(path), error
                assert _stored(index) == before
                outcomes["rejected"] += 1
                return
            results = [ingestor.process(job) for job in make_shards(rows, 3)]
            for result in results:
                index.add(result.rows)
                assert all(q["uri"] and q["reason"] for q in result.quarantined), result
            after = _stored(index)
            assert {k: after[k] for k in before} == before
            produced = {r["clip_id"] for result in results for r in result.rows}
            assert set(after) == set(before) | produced
            accounted = {r["uri"] for result in results for r in result.rows}
            accounted |= {q["uri"] for result in results for q in result.quarantined}
            assert {row.uri for row in rows} <= accounted
            outcomes["ingested"] += 1
            outcomes["indexed"] += len(produced)
            outcomes["quarantined"] += sum(len(result.quarantined) for result in results)

    def _write(
        path: Path, items: list[tuple[str, Any]], files: dict | None = None, tmp: Path | None = None
    ) -> Path:
        files = files or media
        text = []
        for kind, item in items:
            if kind == "raw":
                text.append(item.replace("\n", " "))
            else:
                text.append(json.dumps({**item, "uri": _uri(item["uri"], files, tmp or root)}))
        path.write_text("\n".join(text) + "\n")
        return path

    try:
        case()
        # The budget must reach both paths, and ingest must both index and quarantine rows.
        assert min(outcomes.values()) >= 2, outcomes
    except Exception as exc:
        fault(
            "manifest fuzz: ingested into a library", expected, f"{type(exc).__name__}: {exc}"[:300]
        )
        raise
    fault(
        f"manifest fuzz: ingested into a library ({BUDGET.max_examples} cases)", expected, expected
    )
