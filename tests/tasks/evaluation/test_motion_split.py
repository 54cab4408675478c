"""The motion split: a render's flow inside the guide clip's still cells and elsewhere add up to
its whole-frame motion, and motion lands on the side where it happens."""

from __future__ import annotations

import numpy as np
import pytest

from story.tasks.evaluation.motion_split import main, motion_split, still_pixels
from story.tasks.evaluation.temporal import clip_temporal
from tests.models.test_still_hold import _square_moving_right


def test_the_two_shares_add_up_to_the_frame_and_the_moving_square_is_elsewhere() -> None:
    clip = _square_moving_right()
    still = still_pixels(clip, 64, 64, (16, 16))
    inside, outside = motion_split(clip, still)
    assert np.isclose(inside + outside, clip_temporal(clip)["motion"], rtol=1e-4)
    assert outside > 10 * inside, "the square moves where the clip is not still"
    frozen = np.repeat(clip[:1], len(clip), 0)
    assert max(motion_split(frozen, still)) < 0.05 * outside, "a frozen clip barely moves"


def test_a_second_checkpoint_of_another_shape_is_refused_by_name() -> None:
    """Run b read through a checkpoint that renders another size cannot be paired with run a:
    the command stops before reading any render, naming both checkpoints."""
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", "t2v-64f4-v3", "--b-checkpoint", "tiny", "--a", "x", "--b", "y"])
    message = str(stop.value)
    assert "tiny" in message and "t2v-64f4-v3" in message and "cannot be paired" in message
