"""Retiming: hold repeats, blend cross-fades, flow moves an object to its in-between place."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.retime import retime


def sliding_disc(positions: list[float], size: int = 32, radius: float = 5.0) -> np.ndarray:
    """A red disc over a smooth gradient at horizontal centres `positions`."""
    yy, xx = np.mgrid[0:size, 0:size]
    ground = (40 + 4 * xx + 2 * yy).clip(0, 255).astype(np.uint8)
    frames = []
    for x in positions:
        frame = np.stack([ground, ground, ground // 2], axis=-1)
        frame[(xx - x) ** 2 + (yy - size / 2) ** 2 <= radius**2] = (250, 60, 40)
        frames.append(frame)
    return np.stack(frames)


def disc_centre(frame: np.ndarray) -> float:
    """Horizontal centre of the red, weighted by how much redder than green each pixel is."""
    weight = np.clip(frame[..., 0].astype(float) - frame[..., 1] - 60, 0, None)
    return float((weight.sum(axis=0) * np.arange(frame.shape[1])).sum() / weight.sum())


def test_whole_positions_give_the_model_frames_back_with_every_method():
    frames = sliding_disc([8, 14, 20])
    for method in ("hold", "blend", "flow"):
        assert np.array_equal(retime(frames, np.array([0.0, 1.0, 2.0]), method), frames)


def test_hold_repeats_the_current_frame_and_clamps_past_the_end():
    frames = sliding_disc([8, 14])
    held = retime(frames, np.array([0.0, 1 / 3, 2 / 3, 1.0, 4 / 3, 5.0]), "hold")
    assert [int(np.argmin([np.abs(h.astype(int) - f).sum() for f in frames])) for h in held] == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]


def test_blend_is_the_average_at_the_midpoint():
    a = np.full((1, 4, 4, 3), 10, np.uint8)
    b = np.full((1, 4, 4, 3), 30, np.uint8)
    mid = retime(np.concatenate([a, b]), np.array([0.5]), "blend")
    assert np.all(mid == 20)


def test_flow_puts_a_moving_disc_where_it_is_in_between():
    frames = sliding_disc([8, 14])
    truth = sliding_disc([10, 12])
    made = retime(frames, np.array([1 / 3, 2 / 3]), "flow")
    blended = retime(frames, np.array([1 / 3, 2 / 3]), "blend")
    for frame, expected in zip(made, [10, 12], strict=True):
        assert disc_centre(frame) == pytest.approx(expected, abs=0.75)
    flow_error = np.abs(made.astype(int) - truth).mean()
    blend_error = np.abs(blended.astype(int) - truth).mean()
    assert flow_error < 0.75 * blend_error


@pytest.mark.parametrize(
    ("frames", "positions", "method", "problem"),
    [
        (np.zeros((2, 4, 4, 3), np.uint8), np.array([0.5]), "morph", "retime method"),
        (np.zeros((2, 4, 4, 3), np.uint8), np.array([]), "hold", "non-empty"),
        (np.zeros((2, 4, 4), np.uint8), np.array([0.5]), "hold", "shaped"),
    ],
)
def test_bad_requests_are_clear_errors(frames, positions, method, problem):
    with pytest.raises(AssemblyError, match=problem):
        retime(frames, positions, method)
