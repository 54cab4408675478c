"""Delivery rates: names, cut points on the story's running time, sample positions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from story.tasks.outputs.delivery import (
    RATES,
    Delivery,
    delivered_spans,
    normalize_rate,
    source_positions,
)
from story.tasks.outputs.errors import AssemblyError


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("24", "24"),
        (24, "24"),
        ("24.0", "24"),
        (23.976, "23.976"),
        ("23.98", "23.976"),
        ("24000/1001", "23.976"),
        ("25", "25"),
        (30.0, "30"),
    ],
)
def test_rates_are_recognised_by_name_or_number(given, name):
    assert normalize_rate(given) == name


@pytest.mark.parametrize("given", ["26", "29.97", "fast", "", "0", "1/0"])
def test_other_rates_are_refused_naming_the_choices(given):
    with pytest.raises(AssemblyError, match="23.976, 24, 25, 30"):
        normalize_rate(given)


def test_a_delivery_records_its_exact_rate_and_method():
    assert Delivery().record() == {"rate": "24", "fps": "24/1", "retime": "flow"}
    assert Delivery("23.976", "flow").record() == {
        "rate": "23.976",
        "fps": "24000/1001",
        "retime": "flow",
    }
    assert Delivery.from_record(Delivery("25", "blend").record()) == Delivery("25", "blend")
    with pytest.raises(AssemblyError, match="retime method 'morph'"):
        Delivery("24", "morph")


@pytest.mark.parametrize("rate", list(RATES))
def test_cuts_keep_each_plot_within_one_frame_and_the_story_within_half(rate):
    fps = RATES[rate]
    counts = [8, 13, 5, 8, 21, 1]
    spans = delivered_spans(counts, 8, fps)
    assert spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    for (first, end), count in zip(spans, counts, strict=True):
        assert abs((end - first) / fps - Fraction(count, 8)) < 1 / fps
    assert abs(spans[-1][1] / fps - Fraction(sum(counts), 8)) <= Fraction(1, 2) / fps


def test_8_to_24_fps_is_exactly_three_delivered_frames_per_model_frame():
    spans = delivered_spans([8, 4], 8, Fraction(24))
    assert spans == [(0, 24), (24, 36)]
    second = source_positions(spans[1], 8, 4, 8, Fraction(24))
    assert np.allclose(second, [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2, 7 / 3, 8 / 3, 3, 3, 3])


def test_every_plot_keeps_at_least_one_frame_even_when_the_model_is_faster():
    spans = delivered_spans([1, 1, 1], 60, Fraction(24))
    assert all(end - first >= 1 for first, end in spans)
    with pytest.raises(AssemblyError):
        delivered_spans([4, 0], 8, Fraction(24))
