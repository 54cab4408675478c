"""The retrieval evaluation's arithmetic on a small real table whose truth is known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from story.tasks.evaluation.retrieval_eval import evaluate
from story.tasks.evaluation.retrieval_library import CAPTIONED, RetrievalLibrary
from story.tasks.evaluation.retrieval_queries import QueryCase
from story.tasks.library.searcher import LibrarySearcher, QueryEncoders
from tests.tasks.library.test_search_ranking import DIM, FixedEncoder, row, table

MOTIONS = ["sideways_left", "circling", "towards", "static", "bouncing", "away"]


@pytest.fixture()
def library(tmp_path: Path) -> tuple[RetrievalLibrary, LibrarySearcher]:
    rows = [row(f"c{i}", motion) for i, motion in enumerate(MOTIONS)]
    index = table(tmp_path, rows)
    truth = {
        f"c{i}.mp4": {"shape": "sphere", "motion": m, "camera": "static", "background": "grass"}
        for i, m in enumerate(MOTIONS)
    }

    class Library(RetrievalLibrary):
        def index(self, table: str):  # the test table stands for both tables
            return index

    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    lib = Library(tmp_path, "validation", truth, {})
    return lib, LibrarySearcher(index, QueryEncoders(same, same))


def test_product_beats_random_and_random_is_exact(library) -> None:
    lib, searcher = library
    cases = [
        QueryCase("a ball slides to the left", "paraphrase", "sphere", "sideways_left"),
        QueryCase("a ball going round in a loop", "paraphrase", "sphere", "circling"),
        QueryCase(
            "a ball coming closer on the grass", "paraphrase", "sphere", "towards", None, "grass"
        ),
        QueryCase("a cube that bounces", "paraphrase", "cube", "bouncing"),
    ]
    results = evaluate(lib, {"paraphrase": cases}, {CAPTIONED: searcher})
    block = results[f"{CAPTIONED}/paraphrase"]
    assert block["queries"] == 4 and block["answerable"] == 3
    product = block["per_query"]["product"]
    assert product["p@1"] == [1.0, 1.0, 1.0, 0.0]
    assert product["ground@1"][2] is True and product["ground@1"][0] is None
    random = block["per_query"]["random"]
    assert random["p@1"][0] == pytest.approx(1 / 6)
    assert random["R@5"][0] == pytest.approx(1 - math.comb(5, 5) / math.comb(6, 5))
    summary = block["summary"]
    assert summary["product"]["p@1"]["mean"] == 0.75
    assert summary["product - random (p@1)"]["difference"] > 0
