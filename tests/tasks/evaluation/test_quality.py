"""The training probe's pixel scores: the warp ratio reads flicker against the real clip."""

from __future__ import annotations

import numpy as np

from story.tasks.evaluation.quality import scene_quality
from story.tasks.training.t2v_data import held_out_scenes, miniworld_structure


def test_the_probe_reads_flicker_as_warp_error_over_the_real_clips() -> None:
    scenes = held_out_scenes(2, 8, 32, 32)
    guides = [miniworld_structure(scene.depth) for scene in scenes]
    real = [scene.rgb for scene in scenes]
    rng = np.random.default_rng(0)
    flicker = [
        np.clip(clip.astype(np.int16) + rng.integers(-40, 41, (len(clip), 1, 1, 3)), 0, 255).astype(
            np.uint8
        )
        for clip in real
    ]
    frozen = [np.repeat(clip[:1], len(clip), axis=0) for clip in real]

    def ratios(renders: list[np.ndarray]) -> list[float]:
        return [row.warp_ratio for row in scene_quality(renders, scenes, guides)]

    assert ratios(real) == [1.0, 1.0], "the real clip against itself"
    assert min(ratios(flicker)) > 1.5, "a brightness that jumps from frame to frame"
    assert max(ratios(frozen)) < 0.05, "a frozen frame has no warp error (and no motion)"
