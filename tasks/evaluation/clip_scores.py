"""Score clips against what they should show: judge-read attributes, object IoU, warp error,
and (given a depth estimator) how far the clip's estimated depth is from its guide.

Used for renders and for every baseline alike (a frozen frame, a clip with no object, the real
clip itself), so a table's rows are measured by one function.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from story.tasks.evaluation.judge_eval import MASK_THRESHOLD, mask_iou
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.evaluation.temporal import clip_temporal

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "texture", "background", "motion", "camera")
ALL = "all six"
IOU = "object IoU"
WARP = "warp error"
MOTION = "motion magnitude"
DEPTH = "depth error"
OBJECT_DEPTH = "object depth error"
COLUMNS: tuple[str, ...] = (*ATTRIBUTES, ALL, IOU, WARP, MOTION, DEPTH, OBJECT_DEPTH)


def _resized_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:] == shape:
        return masks
    return np.stack([cv2.resize(m.astype(np.uint8), shape[::-1], cv2.INTER_NEAREST) for m in masks])


def score_clips(
    reader: JudgeReader,
    clips: list[np.ndarray],
    targets: list[dict[str, str]],
    guide_masks: list[np.ndarray],
    guides: list[np.ndarray] | None = None,
    estimate_depth: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per clip: 1/0 per attribute the judge reads as the target's, all six at once, the IoU of
    the judge's main-object mask with the guide's, warp error and motion; with `guides` and
    `estimate_depth` (frames -> (T, H, W) disparity in [-1, 1]) the mean |estimate - guide| / 2
    over the frame and over the guide's main object. And the embeddings."""
    reading = reader.read(clips)
    scores = {
        name: np.array([float(reading.labels[name][i] == t[name]) for i, t in enumerate(targets)])
        for name in ATTRIBUTES
    }
    scores[ALL] = np.prod([scores[name] for name in ATTRIBUTES], axis=0)
    ious = []
    for probability, guide in zip(reader.masks(clips), guide_masks, strict=True):
        found = probability > MASK_THRESHOLD
        frames = min(len(found), len(guide))
        found = _resized_masks(found[:frames].astype(np.uint8), guide.shape[1:]) > 0
        ious.append(mask_iou(found, guide[:frames]))
    scores[IOU] = np.array(ious)
    temporal = [clip_temporal(clip) for clip in clips]
    scores[WARP] = np.array([t["warp_error"] for t in temporal])
    scores[MOTION] = np.array([t["motion"] for t in temporal])
    if guides is not None and estimate_depth is not None:
        errors = [
            np.abs(estimate_depth(clip)[: len(guide)] - guide[: len(clip)]) / 2.0
            for clip, guide in zip(clips, guides, strict=True)
        ]
        scores[DEPTH] = np.array([float(e.mean()) for e in errors])
        scores[OBJECT_DEPTH] = np.array(
            [
                float(e[m[: len(e)]].mean()) if m.any() else 0.0
                for e, m in zip(errors, guide_masks, strict=True)
            ]
        )
    return scores, reading.embeddings
