"""deflicker: the delivered frames calmed along their own motion, where that motion explains the
change, and nothing else moved: a TD checks the flicker goes, the motion stays, a new object is
not ghosted, and bad input is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from story.models.deflicker import deflicker, deflicker_video
from story.tasks.evaluation.temporal import clip_temporal
from tests.models.test_still_hold import _textured


def _flickering(clip: np.ndarray, amplitude: float = 6.0, seed: int = 0) -> np.ndarray:
    """`clip` with independent per-frame noise of `amplitude` grey levels (a render's flicker)."""
    noise = np.random.default_rng(seed).normal(0.0, amplitude, clip.shape)
    return np.clip(clip + noise, 0, 255).round().astype(np.uint8)


def _pan(frames: int = 12, step: int = 2) -> np.ndarray:
    ground = _textured(64, 64 + step * frames)
    return np.stack([ground[:, step * t : step * t + 64] for t in range(frames)])


def test_flicker_on_a_still_shot_falls_and_zero_changes_nothing() -> None:
    still = np.repeat(_textured(64, 64)[None], 12, 0)
    shot = _flickering(still)
    calm = deflicker(shot, 0.5)
    before, after = clip_temporal(shot)["warp_error"], clip_temporal(calm)["warp_error"]
    assert after < 0.8 * before, (before, after)
    # closer to the clean shot than the flickering input was
    assert np.abs(calm[1:].astype(int) - still[1:]).mean() < np.abs(shot[1:] - still[1:]).mean()
    assert calm[0].tobytes() == shot[0].tobytes(), "the first frame has nothing to carry"
    assert deflicker(shot, 0.0) is shot
    assert np.array_equal(deflicker(shot, 0.5), calm), "a function of the frames alone"


def test_a_pan_keeps_its_motion_while_its_flicker_falls() -> None:
    pan = _pan()
    shot = _flickering(pan, amplitude=5.0)
    calm = deflicker(shot, 0.5)
    before, after = clip_temporal(shot), clip_temporal(calm)
    assert after["warp_error"] < 0.9 * before["warp_error"], (before, after)
    assert after["motion"] == pytest.approx(before["motion"], rel=0.05)
    assert clip_temporal(pan)["motion"] == pytest.approx(after["motion"], rel=0.1)


def test_an_object_that_appears_is_not_ghosted_nor_blended_away() -> None:
    """Where the flow cannot explain the change (a new object), the frame is left as drawn."""
    still = np.repeat(_textured(64, 64)[None], 8, 0)
    still[4:, 20:36, 20:36] = (230, 20, 20)
    calm = deflicker(still, 1.0)
    square = calm[4:, 22:34, 22:34].astype(int)
    assert np.abs(square - np.array([230, 20, 20])).max() <= 2
    # and the ground before it came stays the ground (nothing red carried backwards)
    assert np.array_equal(calm[:4], still[:4])


def test_the_pipelines_decoded_video_gets_the_frames_synthesize_delivers() -> None:
    shot = _flickering(_pan(frames=8))
    video = torch.from_numpy(shot).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
    out = deflicker_video(video, 0.3)
    assert out.shape == video.shape
    frames = out[0].permute(1, 2, 3, 0).add(1.0).mul(127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(frames, deflicker(shot, 0.3))


def test_bad_input_is_refused_by_name() -> None:
    shot = _flickering(_pan(frames=4))
    with pytest.raises(ValueError, match=r"deflicker must be in \[0, 1\]"):
        deflicker(shot, 1.5)
    with pytest.raises(ValueError, match="uint8"):
        deflicker(shot.astype(np.float32), 0.3)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        deflicker(shot[..., 0], 0.3)


@torch.no_grad()
def test_a_long_shot_is_deflickered_whole_seams_included() -> None:
    """`synthesize` runs the pass last, over the whole delivered shot: a long shot rendered with
    it is the shot rendered without it, put through the pass (so an evaluation can derive it)."""
    from story.models.t2v import random_tiny
    from story.tasks.render.synthesize import synthesize

    model = random_tiny(frames=4, size=16)
    guide = np.linspace(-1, 1, 10 * 16 * 16, dtype=np.float32).reshape(10, 16, 16)
    drawn = synthesize(model, "a red cube", guide, steps=2, seed=3, deflicker=0.0)
    calm = synthesize(model, "a red cube", guide, steps=2, seed=3, deflicker=0.3)
    assert drawn.shape == calm.shape == (10, 16, 16, 3)
    assert np.array_equal(calm, deflicker(drawn, 0.3))
    assert not np.array_equal(calm, drawn)
