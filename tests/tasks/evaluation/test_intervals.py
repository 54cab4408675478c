"""Intervals: honest for accuracies near 1, cluster-resampled over seeds, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.evaluation.intervals import mean_interval, paired_difference, ratio_interval


def test_an_accuracy_of_one_still_has_an_interval_below_one() -> None:
    perfect = mean_interval(np.ones(50))
    assert perfect["mean"] == 1.0 and perfect["method"] == "wilson"
    assert 0.9 < perfect["low"] < 0.95 and perfect["high"] == 1.0
    assert mean_interval(np.ones(500))["low"] > perfect["low"]


def test_interval_covers_the_mean_and_narrows_with_more_units() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.3, 0.1, 30), rng.normal(0.3, 0.1, 600)
    a, b = mean_interval(small), mean_interval(large)
    assert a["low"] < a["mean"] < a["high"] and b["low"] < 0.3 < b["high"]
    assert b["high"] - b["low"] < a["high"] - a["low"]


def test_seeds_of_one_unit_are_not_counted_as_independent() -> None:
    rng = np.random.default_rng(1)
    unit = rng.normal(0.0, 1.0, (40, 1))
    repeated = np.repeat(unit, 10, axis=1)  # 10 seeds that agree add no evidence
    one, ten = mean_interval(unit), mean_interval(repeated)
    assert ten["seeds"] == 10
    assert ten["high"] - ten["low"] == pytest.approx(one["high"] - one["low"], rel=0.05)


def test_paired_difference_finds_a_real_gain_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0.5, 0.2, 200)
    gain = paired_difference(base + 0.05 + rng.normal(0, 0.02, 200), base)
    noise = paired_difference(base + rng.normal(0, 0.02, 200), base)
    assert gain["significant"] and gain["low"] > 0
    assert not noise["significant"] and noise["low"] < 0 < noise["high"]
    with pytest.raises(ValueError, match="shape"):
        paired_difference(np.ones((3, 2)), np.ones((3, 1)))


def test_ratio_of_means_with_interval() -> None:
    rng = np.random.default_rng(3)
    denominator = rng.uniform(1.0, 2.0, 100)
    result = ratio_interval(2.0 * denominator, denominator)
    assert result["ratio"] == pytest.approx(2.0) and result["low"] == pytest.approx(2.0)
    assert ratio_interval(np.zeros(100), denominator)["ratio"] == 0.0
