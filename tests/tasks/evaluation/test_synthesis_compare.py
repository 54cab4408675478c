"""Two synthesis reports of the same plots compared plot by plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from story.tasks.evaluation.synthesis_compare import (
    CompareError,
    compare_reports,
    comparison_markdown,
    load_report,
)


def _report(tmp_path, name, seeds, colour, iou):
    folder = tmp_path / name
    folder.mkdir()
    per_case = {
        "production": {
            "scene_seeds": seeds,
            "structure-guided": {"colour": colour, "object IoU": iou},
            "text-only": {"colour": [[0.0]] * len(seeds), "object IoU": [[0.1]] * len(seeds)},
        }
    }
    summary = {"model_id": f"{name}@1", "per_case": per_case}
    (folder / "report.json").write_text(json.dumps({"summary": summary}))
    return folder


def test_b_minus_a_is_paired_over_the_plots_both_scored(tmp_path) -> None:
    rng = np.random.default_rng(0)
    iou = rng.uniform(0.2, 0.8, (40, 1))
    a = _report(tmp_path, "a", list(range(40)), [[0.0]] * 20 + [[1.0]] * 20, iou.tolist())
    # B scores ten more plots, in another order; on the common 40 its IoU is A's + 0.05 exactly.
    seeds_b = list(range(49, -1, -1))
    iou_b = [[float(iou[s, 0]) + 0.05] if s < 40 else [0.0] for s in seeds_b]
    colour_b = [[1.0] if s < 40 else [0.0] for s in seeds_b]
    b = _report(tmp_path, "b", seeds_b, colour_b, iou_b)
    result = compare_reports(load_report(a), load_report(b / "report.json"))
    assert result["plots"] == 40
    diff = result["metrics"]["object IoU"]["b_minus_a"]
    # Paired: the difference is exact although the plots' IoU spreads widely.
    assert diff["difference"] == pytest.approx(0.05) and diff["high"] - diff["low"] < 1e-6
    assert diff["significant"]
    colour = result["metrics"]["colour"]
    assert colour["a"]["mean"] == 0.5 and colour["b"]["mean"] == 1.0
    assert colour["b_minus_a"]["difference"] == 0.5 and colour["b_minus_a"]["significant"]
    # In relative terms: B's mean IoU over A's, resampled in pairs, so the interval is about
    # 0.02 wide where two independent means' ratio would be about 0.3.
    relative = result["metrics"]["object IoU"]["b_over_a"]
    expected = (iou.mean() + 0.05) / iou.mean()
    assert relative["ratio"] == pytest.approx(expected, abs=1e-4)
    assert relative["low"] < expected < relative["high"] < relative["low"] + 0.05
    assert colour["b_over_a"]["ratio"] == 2.0
    table = comparison_markdown(result)
    assert "40 plots in common" in table and "| object IoU |" in table and "+0.050" in table
    assert f"{expected - 1:+.1%}" in table and "| +100.0% [" in table


def test_no_relative_change_against_a_zero_mean(tmp_path) -> None:
    a = _report(tmp_path, "a", [1, 2, 3], [[0.0]] * 3, [[0.5]] * 3)
    b = _report(tmp_path, "b", [1, 2, 3], [[1.0]] * 3, [[0.4]] * 3)
    result = compare_reports(load_report(a), load_report(b))
    assert result["metrics"]["colour"]["b_over_a"] is None
    assert result["metrics"]["object IoU"]["b_over_a"]["ratio"] == pytest.approx(0.8)


def test_text_only_against_guided_and_seed_counts_that_differ(tmp_path) -> None:
    a = _report(tmp_path, "a", [1, 2, 3], [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[0.5, 0.5]] * 3)
    b = _report(tmp_path, "b", [1, 2, 3], [[1.0]] * 3, [[0.5]] * 3)
    result = compare_reports(load_report(a), load_report(b))
    assert result["metrics"]["colour"]["b_minus_a"]["difference"] == pytest.approx(0.5)
    versus_text = compare_reports(load_report(a), load_report(a), condition_b="text-only")
    assert versus_text["metrics"]["colour"]["b_minus_a"]["difference"] == pytest.approx(-0.5)


def test_reports_that_cannot_be_compared_say_why(tmp_path) -> None:
    a = _report(tmp_path, "a", [1, 2], [[1.0]] * 2, [[0.5]] * 2)
    b = _report(tmp_path, "b", [7, 8], [[1.0]] * 2, [[0.5]] * 2)
    with pytest.raises(CompareError, match="0 plot\\(s\\) in common"):
        compare_reports(load_report(a), load_report(b))
    with pytest.raises(CompareError, match="no 'controlled' cases"):
        compare_reports(load_report(a), load_report(a), case_set="controlled")
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.json").write_text(json.dumps({"summary": {"model_id": "x"}}))
    with pytest.raises(CompareError, match="no per-case scores"):
        load_report(old)
    with pytest.raises(CompareError, match="no synthesis report"):
        load_report(tmp_path / "missing")
