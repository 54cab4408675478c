"""Full-text search in memory scores as LanceDB's index does, and breaks ties the same way
whatever the limit; its tokenizer loads without importing the lancedb package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from story.tasks.library.bm25 import Bm25, tokens
from story.tasks.library.index import ClipIndex
from tests.tasks.library.test_search_ranking import DIM, row

CAPTIONS = (
    "A red sphere slides to the left on the grass, while the camera pans left.",
    "A blue cube bounces on the sand while the camera does not move.",
    "A green cone circles on the snow as the camera zooms in.",
    "",  # no tokens: not a document
    "the and of",  # stop words only: no tokens either
    "Bouncing balls, bouncing cubes and a bouncing cone.",
    "A red sphere slides to the left on the grass, while the camera pans left.",  # a tie
)
QUERIES = (
    "a ball slides to the left on the grass",
    "bouncing bouncing cube",  # a repeated token counts twice
    "camera",
    "cone snow",
    "nothing of the sort here",
    "zebra",
)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClipIndex, list[str]]:
    index = ClipIndex(str(tmp_path_factory.mktemp("bm25") / "db"), text_dim=DIM, visual_dim=DIM)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(40)]
    rows = [row(f"clip{i:02d}", "static", caption=c) for i, c in enumerate(captions)]
    index.add(rows[:25])
    index.add(rows[25:])
    index.ensure_indices(ivf_pq_min_rows=10_000)
    order = index.table.search().select(["caption"]).limit(None).to_arrow().column(0).to_pylist()
    return index, order


@pytest.mark.parametrize("query", QUERIES)
def test_scores_are_lancedbs(table: tuple[ClipIndex, list[str]], query: str) -> None:
    index, captions = table
    ids = [f"clip{i:02d}" for i in range(len(captions))]
    fts = Bm25.from_captions(captions)
    for limit in (3, 40):
        expected = (
            index.table.search(query, query_type="fts", fts_columns="caption")
            .select(["clip_id", "_score"])
            .limit(limit)
            .to_list()
        )
        found = fts.top(query, np.ones(len(captions), bool), limit)
        assert [s for _, s in found] == pytest.approx([r["_score"] for r in expected], rel=1e-6)
        # Same rows, up to the order of tied rows (and which tied rows make the cut).
        cut = min((s for _, s in found), default=0.0)
        above = {ids[i] for i, s in found if s > cut * (1 + 1e-6)}
        assert above == {r["clip_id"] for r in expected if r["_score"] > cut * (1 + 1e-6)}


def test_ties_come_in_table_order_whatever_the_limit() -> None:
    fts = Bm25.from_captions(list(CAPTIONS) * 3)
    keep = np.ones(3 * len(CAPTIONS), bool)
    best = fts.top("sphere slides left", keep, 6)
    assert [i for i, _ in best] == [0, 6, 7, 13, 14, 20]
    assert fts.top("sphere slides left", keep, 2) == best[:2]
    keep[0] = False  # a filtered-out row is not returned
    assert [i for i, _ in fts.top("sphere slides left", keep, 6)] == [6, 7, 13, 14, 20]
    assert fts.top("zebra", keep, 5) == []


def test_tokens_are_the_indexs_and_load_without_the_lancedb_package(tmp_path: Path) -> None:
    assert tokens("The balls are Bouncing") == ["ball", "bounc"]
    code = (
        "import sys\n"
        "from story.tasks.library.bm25 import tokens\n"
        "print(tokens('Circling cubes'))\n"
        "print('lancedb' in sys.modules)\n"
        "import lancedb\n"  # the package still imports afterwards, on the same native module
        f"db = lancedb.connect({str(tmp_path / 'db')!r})\n"
        "print(lancedb.tokenize('Circling cubes')[0].text)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["['circl',", "'cube']", "False", "circl"]
