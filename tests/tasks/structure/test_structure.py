"""Edge and motion structure maps: where they light up, their shapes, ranges and normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.structure.maps import (
    EdgeStructure,
    MotionStructure,
    load_structure_estimator,
    resolve_structure_model_id,
)


def moving_square(frames: int = 5, size: int = 64, step: int = 2) -> np.ndarray:
    """A textured bright square moving right by `step` pixels a frame over a dark background."""
    rng = np.random.default_rng(0)
    texture = rng.integers(150, 255, (20, 20, 3), dtype=np.uint8)
    clip = np.full((frames, size, size, 3), 30, np.uint8)
    for t in range(frames):
        x = 10 + step * t
        clip[t, 22:42, x : x + 20] = texture
    return clip


def test_edges_outline_the_square():
    clip = moving_square()
    edges = EdgeStructure().estimate(clip, size=(32, 32))

    assert edges.shape == (5, 32, 32) and edges.dtype == np.float32
    assert edges.min() >= -1 and edges.max() <= 1
    border = edges[0, 11, 5:15].max()  # top edge of the square at half resolution
    background = edges[0, :5, :].max()
    assert border > 0 and background == pytest.approx(-1)


def test_blank_frames_give_flat_finite_maps():
    blank = np.zeros((2, 16, 16, 3), np.uint8)
    for extractor in (EdgeStructure(), MotionStructure()):
        out = extractor.estimate(blank)
        assert np.isfinite(out).all()
        assert out.min() >= -1 and out.max() <= 1


def test_motion_points_right_where_the_square_moves():
    clip = moving_square(step=2)
    flow = MotionStructure().estimate(clip, size=(32, 32))

    assert flow.shape == (5, 32, 32, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() <= 1
    inside = flow[2, 13:19, 8:14]  # the square's middle at half resolution
    assert inside[..., 0].mean() > 0.3
    assert abs(inside[..., 1].mean()) < 0.15
    assert np.abs(flow[2, :4, :, :]).max() < 0.2  # static background


def test_motion_clip_normalisation_shares_one_scale():
    clip = np.concatenate([moving_square(3, step=1), moving_square(3, step=4)[1:]])
    per_clip = MotionStructure().estimate(clip, normalize="clip")
    per_frame = MotionStructure().estimate(clip, normalize="frame")
    peaks_clip = np.linalg.norm(per_clip, axis=-1).reshape(len(clip), -1).max(1)
    peaks_frame = np.linalg.norm(per_frame, axis=-1).reshape(len(clip), -1).max(1)

    assert peaks_clip.max() == pytest.approx(1, abs=1e-3)
    assert peaks_clip[1] < 0.6  # the slow frames stay small next to the fast ones
    assert np.allclose(peaks_frame, 1, atol=1e-3)


def test_structure_kinds_resolve_by_name():
    assert load_structure_estimator("edges").model_id == resolve_structure_model_id("edges")
    assert load_structure_estimator("motion").model_id == resolve_structure_model_id("motion")
    with pytest.raises(ValueError, match="normalize"):
        EdgeStructure().estimate(moving_square(2), normalize="global")
