"""pixel_hold: pixels the guide clip holds still are held still in the decoded frames, a few
pixels of margin from anything that moves, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from story.models.still_hold import (
    PIXEL_MARGIN,
    hold_pixels,
    run_means,
    still_cells,
    still_pixels,
)
from tests.models.test_still_hold import _square_moving_right


def test_still_pixels_leave_a_margin_round_what_moves_and_hold_the_rest() -> None:
    clip = _square_moving_right()
    still = still_pixels(clip, (64, 64))
    assert still.shape == (8, 64, 64) and still.dtype == torch.bool
    assert not still[0].any(), "frame 0 starts every run"
    for t in range(1, 8):
        # Where the square was and is is never held, nor the margin beside its leading edge.
        assert not still[t, 8:16, 4 + 2 * (t - 1) : 12 + 2 * t + PIXEL_MARGIN].any(), t
    assert still[1:, 30:].float().mean() > 0.95, "the ground far from the square is still"
    # Finer than the latent hold, whose 4x4 cells with a cell of margin leave more alone.
    cells = still_cells(clip, (64, 64), (16, 16))
    coarse = cells.repeat_interleave(4, 1).repeat_interleave(4, 2)
    assert still[coarse].all(), "every pixel of a held cell is a held pixel"
    assert still[1:].float().mean() > coarse[1:].float().mean() + 0.03
    with pytest.raises(ValueError, match="guide frames"):
        still_pixels(clip[..., 0], (64, 64))


def test_the_running_sums_give_the_latent_holds_run_means() -> None:
    """hold_pixels reads run means from running sums (a 256-frame shot's one-hot would not fit);
    they are the latent hold's means."""
    g = torch.Generator().manual_seed(1)
    for frames in (1, 2, 7, 16):
        x = torch.randn(2, 3, frames, 5, 6, generator=g)
        still = torch.rand(2, frames, 5, 6, generator=g) > 0.4
        assert torch.allclose(hold_pixels(x, still, 1.0), run_means(x, still), atol=1e-6)


@torch.no_grad()
def test_both_holds_read_the_guides_motion_once_a_clip(monkeypatch) -> None:
    """The latent and the pixel hold share one read of the guide's motion (its optical flow is
    the holds' whole cost), in a shot and in a batch, and the maps are the public ones."""
    import story.models.still_hold as hold_module
    from story.models.t2v import random_tiny
    from story.tasks.render.synthesize import (
        _guide_stills,
        render_batch,
        resize_structure,
        synthesize,
    )
    from tests.models.t2v_stubs import HashTextEncoder
    from tests.models.test_still_hold import _still_clip

    model = random_tiny(text_dim=16, frames=4).eval()
    model.set_text_encoder(HashTextEncoder(16))
    cfg = model.config
    depth, _ = _still_clip(model)
    clip = _square_moving_right(frames=cfg.frames, size=cfg.height)
    cells, pixels = _guide_stills(model, clip, cells=cfg.frames, pixels=cfg.frames)
    size, latent = (cfg.height, cfg.width), tuple(model.latent_shape[-2:])
    assert torch.equal(cells, still_cells(clip, size, latent))
    assert torch.equal(pixels, still_pixels(clip, size))

    reads: list[tuple] = []
    read = hold_module.moving_pixels
    monkeypatch.setattr(hold_module, "moving_pixels", lambda *a: reads.append(a) or read(*a))
    both = {"still_hold": 1.0, "pixel_hold": 1.0}
    synthesize(model, "a red cube", depth, steps=2, seed=1, guide_frames=clip, **both)
    assert len(reads) == 1
    reads.clear()
    guide = resize_structure(depth, cfg.height, cfg.width)
    structures = torch.stack([guide, guide])
    args = (model, ["a red cube", "a blue ball"], structures)
    held = render_batch(*args, steps=2, seed=1, guide_frames=[clip, clip], **both)
    assert len(reads) == 2
    free = render_batch(*args, steps=2, seed=1, guide_frames=[clip, clip], still_hold=1.0)
    assert not np.array_equal(held, free), "the pixel hold changes the batch"
