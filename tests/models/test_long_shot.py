"""Reuse-and-Diffuse long shots on a tiny random model: length, seams, determinism."""

from __future__ import annotations

import pytest
import torch

from story.models.long_shot import ReuseDiffuse, clip_starts, continuation_noise, sample_long
from story.models.t2v import random_tiny


@pytest.fixture(scope="module")
def model():
    return random_tiny(frames=4, size=16, seed=0).eval()


@pytest.fixture(scope="module")
def states(model):
    return model.encode_prompts(["a red ball bounces"]), model.encode_prompts([""])


def test_clips_overlap_by_the_prompt_frames_and_cover_the_shot() -> None:
    assert clip_starts(8, 8, 2) == [0]
    assert clip_starts(20, 8, 2) == [0, 6, 12]
    assert clip_starts(10, 8, 2) == [0, 2]
    for total in range(8, 40):
        starts = clip_starts(total, 8, 3)
        assert starts[-1] + 8 == total
        assert all(b - a <= 8 - 3 for a, b in zip(starts, starts[1:], strict=False))


def test_continuation_noise_keeps_prompt_noise_and_reverses_the_past() -> None:
    previous = torch.randn(1, 4, 6, 2, 2, generator=torch.Generator().manual_seed(0))
    params = ReuseDiffuse(prompt_frames=2, alpha=1e6)
    noise = continuation_noise(previous, params, torch.Generator().manual_seed(1), overlap=2)
    assert torch.equal(noise[:, :, :2], previous[:, :, -2:])
    assert torch.allclose(noise[:, :, 2:], previous.flip(2)[:, :, 2:], atol=1e-4)
    fresh = continuation_noise(
        previous, ReuseDiffuse(alpha=0.0), torch.Generator().manual_seed(1), overlap=2
    )
    assert not torch.allclose(fresh[:, :, 2:], previous.flip(2)[:, :, 2:], atol=0.5)


def test_a_long_shot_has_the_asked_length_and_is_deterministic(model, states) -> None:
    text, null = states
    guide = torch.rand(1, 1, 11, 16, 16) * 2 - 1
    kwargs = {"steps": 3, "guidance": 2.0, "seed": 4}
    a = sample_long(model, text, null, guide, 11, **kwargs)
    b = sample_long(model, text, null, guide, 11, **kwargs)
    assert a.shape == (1, 3, 11, 16, 16)
    assert torch.equal(a, b)
    c = sample_long(model, text, null, guide, 11, **{**kwargs, "seed": 5})
    assert not torch.equal(a, c)


def test_staged_guidance_changes_the_continued_frames(model, states) -> None:
    text, null = states
    kwargs = {"steps": 4, "guidance": 1.0, "seed": 2}
    free = sample_long(model, text, null, None, 7, params=ReuseDiffuse(beta=0.0), **kwargs)
    pinned = sample_long(model, text, null, None, 7, params=ReuseDiffuse(beta=1.0), **kwargs)
    assert torch.equal(free[:, :, :4], pinned[:, :, :4])
    assert not torch.equal(free[:, :, 4:], pinned[:, :, 4:])


def test_bad_parameters_are_refused(model, states) -> None:
    text, null = states
    with pytest.raises(ValueError, match="prompt_frames"):
        sample_long(
            model, text, null, None, 9, params=ReuseDiffuse(prompt_frames=4), steps=1, guidance=1.0
        )
    with pytest.raises(ValueError, match="at least 4 frames"):
        sample_long(model, text, null, None, 3, steps=1, guidance=1.0)


def test_shared_noise_carries_into_each_continued_clip(model, states) -> None:
    previous = torch.randn(1, 4, 6, 2, 2, generator=torch.Generator().manual_seed(0))
    params = ReuseDiffuse(prompt_frames=2, alpha=0.0)
    plain = continuation_noise(previous, params, torch.Generator().manual_seed(1), overlap=2)
    zero = continuation_noise(previous, params, torch.Generator().manual_seed(1), 2, share=0.0)
    shared = continuation_noise(previous, params, torch.Generator().manual_seed(1), 2, share=0.9)
    assert torch.equal(plain, zero)
    assert torch.equal(shared[:, :, :2], previous[:, :, -2:])  # prompt frames keep their noise
    spread = lambda x: float(x[:, :, 2:].std(dim=2).mean())  # noqa: E731
    assert spread(shared) < 0.5 * spread(plain)  # the new frames start close to each other
    text, null = states
    kwargs = {"steps": 3, "guidance": 2.0, "seed": 4, "noise_share": 0.5}
    a = sample_long(model, text, null, None, 11, **kwargs)
    assert torch.equal(a, sample_long(model, text, null, None, 11, **kwargs))
    assert not torch.equal(
        a, sample_long(model, text, null, None, 11, **{**kwargs, "noise_share": 0})
    )


def test_noise_carried_along_the_guide_reaches_every_continued_clip(model, states) -> None:
    text, null = states
    guide = torch.rand(1, 1, 11, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    kwargs = {"steps": 2, "guidance": 2.0, "seed": 4, "noise_warp": 0.5}
    a = sample_long(model, text, null, guide, 11, **kwargs)
    assert torch.equal(a, sample_long(model, text, null, guide, 11, **kwargs))
    plain = sample_long(model, text, null, guide, 11, **{**kwargs, "noise_warp": 0})
    assert not torch.equal(a[:, :, :4], plain[:, :, :4])  # the first clip's start
    previous = torch.randn(1, 4, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    params = ReuseDiffuse(prompt_frames=2, alpha=0.0)
    carried = continuation_noise(
        previous, params, torch.Generator().manual_seed(1), 2, warp=0.9, structure=guide[:, :, :4]
    )
    fresh = continuation_noise(previous, params, torch.Generator().manual_seed(1), 2)
    assert torch.equal(carried[:, :, :2], previous[:, :, -2:])
    assert not torch.equal(carried[:, :, 2:], fresh[:, :, 2:])  # ... and each continuation's


def test_a_carried_warp_is_one_moving_noise_for_the_whole_shot(model, states) -> None:
    """carry_warp (the default): the first window starts exactly as a one-clip render of its
    frames would, each continued window's prompt frames keep their noise, and the shared part of
    every window is the one draw carried along the whole guide; per-window draws (the former
    behaviour) give another shot."""
    from story.models.long_shot import CarriedWarp
    from story.models.sampler import initial_noise

    text, null = states
    guide = torch.rand(1, 1, 11, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    carried = CarriedWarp(model, 1, torch.Generator().manual_seed(4), 0.8, guide, 11)
    alone = initial_noise(model, 1, torch.Generator().manual_seed(4), 0.0, 0.8, guide[:, :, :4])
    assert torch.equal(carried.start(0), alone)
    first = carried.start(0)
    params = ReuseDiffuse(prompt_frames=2, alpha=1.0)
    carried.continue_own(params, torch.Generator().manual_seed(5), overlap=2)
    second = carried.start(2)
    assert torch.equal(second[:, :, :2], first[:, :, 2:])  # the prompt frames' noise, kept
    moving = (second - 0.2**0.5 * carried.own) / 0.8**0.5
    assert torch.allclose(moving, carried.moved[:, :, 2:6], atol=1e-5)
    kwargs = {"steps": 2, "guidance": 2.0, "seed": 4, "noise_warp": 0.8}
    a = sample_long(model, text, null, guide, 11, **kwargs)
    assert torch.equal(a, sample_long(model, text, null, guide, 11, **kwargs))
    per_window = sample_long(
        model, text, null, guide, 11, params=ReuseDiffuse(carry_warp=False), **kwargs
    )
    assert torch.equal(a[:, :, :4], per_window[:, :, :4])  # the first clip is the same
    assert not torch.equal(a[:, :, 4:], per_window[:, :, 4:])
    with pytest.raises(ValueError, match="one of them"):
        sample_long(model, text, null, guide, 11, **{**kwargs, "noise_share": 0.5})
