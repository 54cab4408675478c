"""Warp error on real world clips: stillness is not rewarded, flicker and seams are caught."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.evaluation.temporal import clip_temporal, pair_motion, seam_temporal
from story.tasks.world import miniworld


@pytest.fixture(scope="module")
def moving() -> np.ndarray:
    spec = miniworld.sample_scene(7, frames=8, height=32, width=32, camera="pan_left")
    return miniworld.render(spec).rgb


def test_a_frozen_frame_has_no_warp_error_and_no_motion(moving) -> None:
    frozen = np.repeat(moving[:1], len(moving), axis=0)
    still = clip_temporal(frozen)
    real = clip_temporal(moving)
    assert still["warp_error"] < 1e-3 and still["motion"] < 1e-3
    assert real["motion"] > 20 * still["motion"]  # the pan moves the whole frame


def test_flow_explains_a_camera_sliding_over_a_scene() -> None:
    wide = miniworld.render(miniworld.sample_scene(3, frames=1, height=32, width=64, n_objects=3))
    clip = np.stack([wide.rgb[0][:, 2 * t : 2 * t + 32] for t in range(8)])  # 2 px per frame
    pairs = pair_motion(clip)
    plain = np.abs(np.diff(clip.astype(np.float32), axis=0)).mean(axis=(1, 2, 3)) / 255.0
    assert pairs.warp_error.mean() < 0.2 * plain.mean()
    assert pairs.motion.mean() > 0.3 * 2 / 32  # flat sky and ground show no motion of their own


def test_flicker_raises_the_warp_error(moving) -> None:
    rng = np.random.default_rng(0)
    gains = rng.uniform(0.75, 1.25, (len(moving), 1, 1, 1))
    flicker = np.clip(moving * gains, 0, 255).astype(np.uint8)
    assert clip_temporal(flicker)["warp_error"] > 2.0 * clip_temporal(moving)["warp_error"]


def test_a_seam_between_two_clips_is_measured_at_the_seam(moving) -> None:
    other = miniworld.render(miniworld.sample_scene(8, frames=8, height=32, width=32)).rgb
    spliced = np.concatenate([moving[:4], other[4:]])
    seams = seam_temporal(spliced, [4])
    assert seams["seam_warp_error"] > 3.0 * seams["within_warp_error"]
    with pytest.raises(ValueError, match="seam"):
        seam_temporal(spliced, [8])
