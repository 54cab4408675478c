"""Starting noise carried along the structure's motion (`noise_warp`)."""

from __future__ import annotations

import pytest
import torch

from story.models.noise_warp import source_positions, structure_flow, warp_shared

FRAMES = 8


def moving_square(step: int = 4) -> torch.Tensor:
    """(1, 1, T, 64, 64) depth: a near square moving right `step` pixels a frame over a ground
    whose depth changes with height only."""
    guide = torch.linspace(-1, 0, 64).view(64, 1).expand(FRAMES, 64, 64).clone()
    for t in range(FRAMES):
        guide[t, 24:40, 8 + step * t : 24 + step * t] = 0.8
    return guide[None, None]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_flow_is_read_from_the_structure_and_chained_to_frame_zero() -> None:
    positions = source_positions(structure_flow(moving_square(), (16, 16)))
    # 4 pixels a frame at 64 is one latent pixel a frame at 16: seven frames on, the square's
    # latent pixels came from seven pixels to the left; the ground did not move.
    centre_x = positions[0, 7, 0, 6:10, 9:11]
    assert torch.allclose(centre_x, torch.arange(9, 11).float() - 7, atol=0.35)
    assert torch.allclose(positions[0, 7, :, 0:3, 12:15], positions[0, 0, :, 0:3, 12:15])


def test_the_shared_draw_moves_with_the_square_and_zero_changes_nothing() -> None:
    plain = torch.randn((1, 4, FRAMES, 16, 16), generator=torch.Generator().manual_seed(1))
    same = warp_shared(plain, 0.0, moving_square(), torch.Generator().manual_seed(2))
    assert torch.equal(same, plain)
    warped = warp_shared(plain, 0.9, moving_square(), torch.Generator().manual_seed(2))
    assert abs(float(warped.std()) - 1.0) < 0.1
    last_on_square = warped[0, :, 7, 6:10, 9:12]
    # Where the square is now, the noise is frame 0's noise from where the square was ...
    assert _correlation(last_on_square, warped[0, :, 0, 6:10, 2:5]) > 0.8
    # ... not frame 0's noise at the same place (what a shared, unmoved draw would give).
    assert abs(_correlation(last_on_square, warped[0, :, 0, 6:10, 9:12])) < 0.3
    # Without a structure nothing moves: the draw is shared in place, as noise_share's.
    still = warp_shared(plain, 0.9, None, torch.Generator().manual_seed(2))
    assert _correlation(still[0, :, 7], still[0, :, 0]) > 0.8


def test_a_guide_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match the noise"):
        warp_shared(torch.zeros(1, 4, 3, 8, 8), 0.5, moving_square(), None)


def test_smoothing_along_the_flow_keeps_what_moves_with_it_and_calms_what_flickers() -> None:
    """A pattern moving one latent pixel a frame to the right, smoothed along that motion, is
    left as it is (inside the frame); the same pattern with flicker added loses most of the
    flicker; averaged in place (no flow), the moving pattern is smeared instead."""
    from story.models.noise_warp import smooth_along_flow

    pattern = torch.randn(1, 4, 1, 12, 24, generator=torch.Generator().manual_seed(0))
    frames = torch.cat([pattern.roll(t, dims=-1) for t in range(6)], dim=2)
    right = torch.zeros(1, 6, 2, 12, 24)
    right[:, 1:, 0] = -1.0  # frame t's pixel p showed in frame t-1 at p - 1
    flows = (right, -right)
    inside = (..., slice(6, 18))
    smoothed = smooth_along_flow(frames, flows, 0.6)
    assert torch.allclose(smoothed[inside], frames[inside], atol=1e-5)
    flicker = torch.randn(frames.shape, generator=torch.Generator().manual_seed(1)) * 0.5
    calmer = smooth_along_flow(frames + flicker, flows, 0.6) - frames
    assert float(calmer[inside].std()) < 0.6 * float(flicker[inside].std())
    still = torch.zeros_like(right)
    smeared = smooth_along_flow(frames, (still, still), 0.6)
    assert float((smeared - frames)[inside].abs().mean()) > 0.3


def test_flow_smoothing_zero_changes_nothing_and_bad_values_are_refused() -> None:
    from story.models.sampler import sample_latents
    from story.models.t2v import random_tiny

    model = random_tiny(frames=4, size=16, seed=0).eval()
    text, null = model.encode_prompts(["a red ball"]), model.encode_prompts([""])
    guide = torch.rand(1, 1, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1

    def run(**knobs):
        return sample_latents(
            model, text, null, guide, steps=3, guidance=2.0,
            generator=torch.Generator().manual_seed(0), **knobs,
        )  # fmt: skip

    plain = run()
    assert torch.equal(plain, run(flow_smoothing=0.0))
    smooth = run(flow_smoothing=0.6)
    assert torch.equal(smooth, run(flow_smoothing=0.6))
    assert float(smooth.diff(dim=2).abs().mean()) < float(plain.diff(dim=2).abs().mean())
    with pytest.raises(ValueError, match="flow_smoothing must be in"):
        run(flow_smoothing=1.0)
