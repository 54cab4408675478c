"""The judge's data: labels follow the clip through time reversal and mirroring, degradations
keep shapes, and training seeds come from the train split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from story.tasks.training.judge_data import (
    Augmentation,
    attribute_vocab,
    augment,
    render_judge_clips,
    training_seeds,
)
from story.tasks.world import splits


@pytest.fixture(scope="module")
def clips():
    return render_judge_clips(training_seeds(0, 12), 8, 16, allowed=(splits.TRAIN,))


def _names(labels, name: str) -> list[str]:
    return [attribute_vocab()[name][i] for i in labels[name]]


def test_clean_clips_are_the_rendered_clips_with_their_labels(clips) -> None:
    video, masks, labels = augment(clips, np.random.default_rng(0), Augmentation.none())
    assert video.shape == (12, 8, 3, 16, 16) and masks.shape == (12, 8, 16, 16)
    back = ((video + 1) * 127.5).round().byte().permute(0, 1, 3, 4, 2).numpy()
    np.testing.assert_array_equal(back, clips.rgb)
    assert all(torch.equal(labels[k], torch.from_numpy(v)) for k, v in clips.labels.items())


def test_time_reversal_swaps_towards_away_and_the_camera_direction(clips) -> None:
    only_reverse = Augmentation(**{**vars(Augmentation.none()), "reverse": 1.0})
    video, masks, labels = augment(clips, np.random.default_rng(0), only_reverse)
    flipped = ((video[0, 0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(flipped, clips.rgb[0, -1])
    swap = {"towards": "away", "away": "towards", "pan_left": "pan_right", "pan_right": "pan_left"}
    swap |= {"zoom_in": "zoom_out", "zoom_out": "zoom_in"}
    for name in ("motion", "camera"):
        before, after = _names(clips.labels, name), _names(labels, name)
        assert after == [swap.get(v, v) for v in before]
    assert _names(labels, "colour") == _names(clips.labels, "colour")


def test_mirroring_swaps_only_the_pan_direction(clips) -> None:
    only_mirror = Augmentation(**{**vars(Augmentation.none()), "mirror": 1.0})
    _, masks, labels = augment(clips, np.random.default_rng(0), only_mirror)
    assert torch.equal(masks[0, 0], torch.from_numpy(clips.masks[0, 0]).float().flip(-1))
    swap = {"pan_left": "pan_right", "pan_right": "pan_left"}
    assert _names(labels, "camera") == [swap.get(v, v) for v in _names(clips.labels, "camera")]
    assert _names(labels, "motion") == _names(clips.labels, "motion")


def test_every_degradation_keeps_shape_and_range(clips) -> None:
    video, _, _ = augment(clips, np.random.default_rng(1), Augmentation())
    assert video.shape == (12, 8, 3, 16, 16) and video.min() >= -1 and video.max() <= 1


def test_training_seeds_are_fresh_per_step_and_train_only() -> None:
    assert training_seeds(1, 4)[0] == training_seeds(0, 4)[-1] + 1
    with pytest.raises(splits.SplitError):
        render_judge_clips(splits.seeds(splits.TEST, "judge", 1), 2, 16, (splits.TRAIN,))
