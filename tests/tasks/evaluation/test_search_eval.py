"""`story eval search` at a size CI can afford: every query's top 10 is judged by scene, the
exact reference finds far more of the right scenes than chance, and a kept table is reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from story.tasks.evaluation.retrieval_queries import grammar_queries
from story.tasks.evaluation.search_corpus import build_corpus
from story.tasks.evaluation.search_eval import (
    SearchEvalConfig,
    SearchEvalError,
    _embedder,
    check_data_dir,
    evaluate_search,
    fastest_within,
    remove_own,
)


def test_the_chosen_setting_is_the_fastest_that_stays_within_the_tolerance_of_exact() -> None:
    def entry(p50: float, low: float, rows: float = 1.0) -> dict:
        return {
            "hybrid": {"p50_ms": p50},
            "minus_exact": {"low": low},
            "index_recall_at_10": {"mean": rows},
        }

    sweep = {"fast": entry(5.0, -0.05), "middle": entry(9.0, -0.01), "slow": entry(20.0, 0.0)}
    assert fastest_within(sweep, 0.02) == "middle"
    assert fastest_within(sweep, 0.10) == "fast"
    assert fastest_within({"fast": entry(5.0, -0.05)}, 0.02) is None
    # Scene-level recall alone would keep a setting that loses most true neighbours.
    sweep["pq only"] = entry(3.0, 0.0, rows=0.4)
    assert fastest_within(sweep, 0.02) == "middle"


def test_search_at_scale_is_judged_by_scene_and_a_kept_table_is_reused(tmp_path: Path) -> None:
    config = SearchEvalConfig(
        rows=2000,
        distinct=300,
        queries=12,
        exact_queries=12,
        settings=[(2, None), (8, 5)],
        clients=[1, 2],
        client_seconds=0.3,
        data_dir=tmp_path / "table",
        keep=True,
    )
    cache = tmp_path / "cache"
    report = evaluate_search(config, cache, log=lambda _: None)

    corpus = build_corpus(config.distinct, cache, _embedder(), log=lambda _: None)
    assert len(set(corpus.captions)) == config.distinct
    cases = grammar_queries("validation", config.queries)
    share = [
        np.mean([case.relevant(corpus.truth_of(i)) for i in range(config.distinct)])
        for case in cases
    ]
    exact = report["exact"]["recall_at_10"]["mean"]
    assert exact > 3 * float(np.mean(share)), (exact, float(np.mean(share)))
    assert set(report["sweep"]) == {"nprobes 2, refine none", "nprobes 8, refine 5"}
    for found in report["sweep"].values():
        assert 0.0 <= found["recall_at_10"]["mean"] <= 1.0
        assert 0.0 < found["index_recall_at_10"]["mean"] <= 1.0
        assert found["hybrid"]["n"] == config.queries
    assert 0.0 < report["default"]["index_recall_at_10"]["mean"] <= 1.0
    chosen = report["fastest_within_tolerance"]
    assert chosen is None or report["sweep"][chosen]["minus_exact"]["low"] >= -0.02
    assert set(report["queries_per_second"]) == {1, 2}
    assert all(q > 0 for q in report["queries_per_second"].values())
    assert "reused" not in report["build"]

    again = evaluate_search(config, cache, log=lambda _: None)
    assert again["build"]["reused"] is True
    assert again["build"]["write_s"] == report["build"]["write_s"]
    assert again["exact"]["recall_at_10"] == report["exact"]["recall_at_10"]
    # The kept table's exact reference is read back, not scanned again.
    assert report["exact"]["reused"] is False and again["exact"]["reused"] is True
    assert again["default"]["index_recall_at_10"] == report["default"]["index_recall_at_10"]

    bigger = evaluate_search(
        SearchEvalConfig(**{**config.__dict__, "rows": 3000, "keep": False}),
        cache,
        log=lambda _: None,
    )
    assert "reused" not in bigger["build"] and bigger["rows"] == 3000
    assert not config.data_dir.exists()


def test_the_table_held_in_memory_is_judged_against_lancedb_exact_search(tmp_path: Path) -> None:
    config = SearchEvalConfig(
        rows=2000,
        distinct=300,
        queries=12,
        exact_queries=12,
        settings=[(1, None), (45, None)],  # one partition; all 45 (sqrt of 2000)
        clients=[1],
        client_seconds=0.3,
        data_dir=tmp_path / "table",
        in_memory=True,
    )
    report = evaluate_search(config, tmp_path / "cache", log=lambda _: None)
    assert report["in_memory"]["partitions"] == 45
    assert set(report["sweep"]) == {"in memory, nprobes 1", "in memory, nprobes 45"}
    every = report["sweep"]["in memory, nprobes 45"]
    # Reading every partition is exact search: the same 10 nearest rows as LanceDB's flat scan.
    assert every["index_recall_at_10"]["mean"] == 1.0
    assert every["minus_exact"]["difference"] == 0.0
    one = report["sweep"]["in memory, nprobes 1"]
    assert one["index_recall_at_10"]["mean"] < every["index_recall_at_10"]["mean"]


def test_a_data_dir_holding_other_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    # --data-dir pointed at a folder of the user's (here a LanceDB folder holding a library
    # table called clips) must not be emptied to make room for the evaluation's table.
    folder = tmp_path / "lancedb"
    (folder / "clips.lance").mkdir(parents=True)
    (folder / "clips.lance" / "data.lance").write_text("the user's library\n")
    (folder / "notes.txt").write_text("mine\n")
    config = SearchEvalConfig(rows=2000, distinct=300, queries=12, data_dir=folder)
    with pytest.raises(SearchEvalError, match=r"lancedb is not a folder this evaluation made"):
        evaluate_search(config, tmp_path / "cache", log=lambda _: None)
    assert sorted(p.name for p in folder.iterdir()) == ["clips.lance", "notes.txt"]
    assert (folder / "clips.lance" / "data.lance").read_text() == "the user's library\n"

    # A folder the evaluation made (its table record) may hold other things too: only its own
    # entries are removed.
    made = tmp_path / "made"
    (made / "clips.lance").mkdir(parents=True)
    (made / "table.json").write_text("{}\n")
    (made / "exact_validation_12_12.json").write_text("{}\n")
    (made / "report").mkdir()
    check_data_dir(made)
    remove_own(made)
    assert [p.name for p in made.iterdir()] == ["report"]
    (made / "report").rmdir()
    remove_own(made)
    assert not made.exists()
