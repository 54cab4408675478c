"""The table held in memory gives the same hits as LanceDB, and follows the table's versions.

A small real table written through `ClipIndex` like ingest writes it: random caption and
video-text vectors (some repeated, so ties must break as LanceDB breaks them; one clip without a
video-text vector), measured motion / camera labels (some missing, so the caption's slots are
read), captions in the world's grammar, and several sources and durations for the filters.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from story.tasks.library.filters import SearchFilters
from story.tasks.library.index import ClipIndex
from story.tasks.library.motion import CAMERA_LABELS, MOTION_LABELS
from story.tasks.library.resident import ResidentTable
from story.tasks.library.search import search
from story.tasks.library.searcher import RESIDENT_COLUMNS, LibrarySearcher, QueryEncoders
from tests.tasks.library.test_search_ranking import DIM, row

CAPTIONS = (
    "A red sphere slides to the left on the grass, while the camera pans left.",
    "A blue cube bounces on the sand while the camera does not move.",
    "A green cone circles on the snow as the camera zooms in.",
    "A yellow cylinder approaches the camera on the grass; the view zooms out.",
    "A purple ball moves away from the camera on the sand while the camera pans right.",
    "",
)
QUERIES = (
    "a ball slides to the left on the grass",
    "cube bouncing up and down on the sand, locked-off shot",
    "cone going round and round while the camera pushes in",
    "something coming towards the camera",
    "a sphere moves to the right while the camera pans right",
    "people walking outdoors",
)
FILTERS = (
    None,
    SearchFilters(min_duration=1.5),
    SearchFilters(max_duration=2.5, min_aspect=1.0),
    SearchFilters(source="studio"),
)


class HashEncoder:
    """A stand-in encoder: each text embeds to its own fixed random unit vector."""

    dim, name = DIM, "hash"

    def embed_sentences(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        return np.asarray([v / np.linalg.norm(v) for v in out], np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return self.embed_sentences([f"visual {t}" for t in texts])

    def vector(self, text: str) -> np.ndarray:
        return self.embed_sentences([text])[0]


def _rows(count: int = 48) -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(count):
        text = rng.normal(size=DIM).astype(np.float32)
        visual = rng.normal(size=DIM).astype(np.float32)
        if i % 9 == 4:  # the same vectors as an earlier clip: a tie
            text, visual = rows[i - 3]["text_vector"], rows[i - 3]["visual_vector"]
        clip = row(
            f"clip{i:02d}",
            MOTION_LABELS[i % len(MOTION_LABELS)],
            CAMERA_LABELS[i % len(CAMERA_LABELS)],
            # Every caption a different length in tokens, so no two rows tie on full-text score
            # (LanceDB orders tied rows as its heap leaves them, memory in table order: test_bm25).
            caption=CAPTIONS[i % len(CAPTIONS)] + " take" * (20 * i),
            source=f"src{i // 3}",
            text=np.asarray(text, np.float32),
            visual=np.asarray(visual, np.float32),
        )
        clip["duration"] = 1.0 + (i % 4) * 0.5
        clip["source"] = "studio" if i % 5 == 0 else "miniworld"
        if i % 7 == 3:  # nothing measured: the caption's slots stand in
            clip["motion_label"] = clip["camera_label"] = None
        if i == 11:
            clip["visual_vector"] = None
        rows.append(clip)
    return rows


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ClipIndex:
    index = ClipIndex(str(tmp_path_factory.mktemp("resident") / "db"), text_dim=DIM, visual_dim=DIM)
    rows = _rows()
    index.add(rows[:30])
    index.add(rows[30:])  # two data files, as appends leave them
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return index


def _hits(index: ClipIndex, resident: ResidentTable | None, query: str, **options: object) -> list:
    encoder = HashEncoder()
    return [
        h.to_dict()
        for h in search(index, encoder, query, visual_encoder=encoder, resident=resident, **options)
    ]


@pytest.mark.parametrize("query", QUERIES)
def test_resident_search_gives_the_same_hits_as_lancedb(index: ClipIndex, query: str) -> None:
    resident = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    assert resident.serves("text_vector", exact=False)
    for filters in FILTERS:
        for options in (
            {"k": 12},
            {"k": 12, "diversity": "off"},
            {"k": 2, "diversity": "off", "pool": 2},  # each list keeps 8: which 8 matters
            {"k": 12, "rerank": False, "diversity": "off"},
            {"k": 4, "mode": "vector", "rerank": False, "diversity": "off", "pool": 4},
            {"k": 12, "mode": "fts", "diversity": "off"},
        ):
            expected = _hits(index, None, query, filters=filters, **options)
            found = _hits(index, resident, query, filters=filters, **options)
            # Full-text scores are LanceDB's to float32 rounding (its sums run in another order).
            scores = [hit.pop("score") for hit in found]
            expected_scores = [hit.pop("score") for hit in expected]
            assert found == expected, (query, filters, options)
            assert scores == pytest.approx(expected_scores, rel=1e-6, abs=1e-9), (query, options)


def test_a_resident_searcher_reads_the_table_again_when_its_version_changes(
    tmp_path: Path,
) -> None:
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=DIM)
    index.add(_rows(6))
    searcher = LibrarySearcher(index, QueryEncoders(HashEncoder(), HashEncoder()), resident=True)
    query = "a ball slides to the left on the grass"
    first = searcher.resident_table()
    assert first is not None and first.count == 6
    assert searcher.resident_table() is first  # same version: kept
    newest = row("newest", "sideways_left", caption=CAPTIONS[0], text=HashEncoder().vector(query))
    index.add([newest])
    hits = searcher.search(query, k=3, diversity="off")
    assert searcher.resident_table().count == 7
    assert hits[0].clip_id == "newest"
    assert searcher.embed([query])[0] is searcher.embed([query])[0]  # remembered
