"""Frechet distance: zero for one distribution, the closed form for Gaussians, paired intervals."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.evaluation.frechet import frechet_distance, frechet_interval


def test_closed_form_for_shifted_and_scaled_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    shifted = a + np.array([2.0, 0.0, 0.0])
    # mean shift 2 -> 4; covariances equal -> no trace term (up to sampling noise)
    assert frechet_distance(a, shifted) == pytest.approx(4.0, abs=0.05)
    scaled = 3.0 * a
    # (1 - 3)^2 per dimension: 3 dims x 4
    assert frechet_distance(a, scaled) == pytest.approx(12.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_interval_orders_a_close_set_below_a_far_one() -> None:
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((300, 8))
    close = [reference + rng.normal(0, 0.1, reference.shape) for _ in range(2)]
    far = [reference + 1.0 + rng.normal(0, 0.1, reference.shape)]
    near_row, far_row = frechet_interval(reference, close), frechet_interval(reference, far)
    assert near_row["sets"] == 2 and near_row["n"] == 300
    assert near_row["high"] < far_row["low"]
    assert far_row["low"] <= far_row["fvd"] <= far_row["high"] + 1e-9
    with pytest.raises(ValueError, match="pair"):
        frechet_interval(reference, [reference[:10]])
