"""One scorer for renders and baselines: every attribute, the mask IoU and temporal figures."""

from __future__ import annotations

import numpy as np

from story.models.judge import VideoJudge
from story.tasks.evaluation.clip_scores import (
    ALL,
    ATTRIBUTES,
    COLUMNS,
    IOU,
    MOTION,
    WARP,
    score_clips,
)
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.training.judge_data import attribute_vocab
from story.tasks.world import miniworld, splits


def test_attribute_reads_and_motion_magnitude_are_separate_columns() -> None:
    assert len(set(COLUMNS)) == len(COLUMNS)
    judge = VideoJudge(
        attributes=attribute_vocab(),
        frames=4,
        size=16,
        appearance_frames=2,
        appearance_widths=(4, 8),
        motion_widths=(8, 8),
        embedding_dim=8,
    )
    reader = JudgeReader(judge, "random-judge")
    seed = splits.seeds(splits.VALIDATION, "scenes", 1)[0]
    spec = miniworld.sample_scene(seed, frames=6, height=32, width=32, camera="pan_left")
    clip = miniworld.render(spec)
    frozen = np.repeat(clip.rgb[:1], len(clip.rgb), axis=0)
    target = miniworld.attributes(spec)
    masks = [clip.masks == 1] * 2
    scores, embeddings = score_clips(reader, [clip.rgb, frozen], [target] * 2, masks)
    assert embeddings.shape == (2, 8)
    for name in (*ATTRIBUTES, ALL):
        assert set(scores[name].tolist()) <= {0.0, 1.0}
    assert ((scores[IOU] >= 0) & (scores[IOU] <= 1)).all()
    assert scores[MOTION][0] > 10 * scores[MOTION][1] and scores[WARP][1] < 1e-3
