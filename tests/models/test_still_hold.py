"""still_hold: cells the guide clip holds still are held still in the render, and nothing else
changes; the still map is read from the clip's pixels, so a pan over flat ground is not still."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from story.models.sampler import sample_latents
from story.models.still_hold import hold_pixels, hold_still, still_cells
from story.models.t2v import StructureT2V, random_tiny
from tests.models.t2v_stubs import HashTextEncoder


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A still background with texture Farneback can lock on to."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (height // 4, width // 4, 3)).astype(np.uint8)
    return np.kron(small, np.ones((4, 4, 1), np.uint8))


def _square_moving_right(frames: int = 8, size: int = 64) -> np.ndarray:
    """A red 8x8 square sliding 2 pixels a frame along rows 8..16 over a still background."""
    clip = np.repeat(_textured(size, size)[None], frames, 0)
    for t in range(frames):
        clip[t, 8:16, 4 + 2 * t : 12 + 2 * t] = (230, 20, 20)
    return clip


def test_a_still_background_is_still_and_the_moving_square_is_not() -> None:
    still = still_cells(_square_moving_right(), (64, 64), (16, 16))
    assert still.shape == (8, 16, 16) and still.dtype == torch.bool
    assert not still[0].any(), "frame 0 starts every run"
    far = still[1:, 10:, :].float().mean()
    assert far > 0.9, f"rows far below the square never move, yet only {far:.0%} are still"
    assert not still[1:, 2:4, 2:5].any(), "the square's path moves at every frame"


def test_a_pan_is_not_still_though_its_depth_would_be() -> None:
    """Depth cannot see a pan over flat ground; the clip's pixels can."""
    ground = _textured(64, 96)
    pan = np.stack([ground[:, 2 * t : 2 * t + 64] for t in range(8)])
    still = still_cells(pan, (64, 64), (16, 16))
    assert still[1:].float().mean() < 0.05


def test_the_map_reads_the_clip_at_the_models_resolution() -> None:
    big = np.kron(_square_moving_right(), np.ones((1, 2, 2, 1), np.uint8))  # 128x128
    assert torch.equal(
        still_cells(big, (64, 64), (16, 16)),
        still_cells(_square_moving_right(), (64, 64), (16, 16)),
    )
    with pytest.raises(ValueError, match="guide frames"):
        still_cells(big[..., 0], (64, 64), (16, 16))


@pytest.mark.parametrize("hold", [hold_still, hold_pixels], ids=["latents", "pixels"])
def test_held_cells_are_the_same_in_every_frame_of_their_run_and_others_do_not_change(
    hold,
) -> None:
    """Latent cells (still_hold) and decoded pixels (pixel_hold) are held the same way."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 4, 4, generator=g)
    still = torch.zeros(6, 4, 4, dtype=torch.bool)
    still[1:3, 0, 0] = True  # cell (0, 0): frames 0-2 one run, 3, 4 and 5 their own
    still[1:, 1, 1] = True  # cell (1, 1): still the whole clip
    held = hold(x, still, 1.0)
    run = held[:, :, 0:3, 0, 0]
    assert torch.allclose(run, x[:, :, 0:3, 0, 0].mean(2, keepdim=True).expand_as(run))
    assert torch.equal(held[:, :, 3:, 0, 0], x[:, :, 3:, 0, 0])
    whole = held[:, :, :, 1, 1]
    assert torch.allclose(whole, x[:, :, :, 1, 1].mean(2, keepdim=True).expand_as(whole))
    moving = torch.ones(4, 4, dtype=torch.bool)
    moving[0, 0] = moving[1, 1] = False
    assert torch.equal(held[..., moving], x[..., moving])
    half = hold(x, still, 0.5)
    assert torch.allclose(half, (x + held) / 2, atol=1e-6)
    assert torch.equal(hold(x, still, 0.0), x)
    with pytest.raises(ValueError, match="still map"):
        hold(x, still[:, :2], 1.0)


@pytest.fixture(scope="module")
def model() -> StructureT2V:
    bundle = random_tiny(text_dim=16, frames=4).eval()
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


@torch.no_grad()
def test_the_sampler_holds_the_still_cells_and_leaves_the_rest(model) -> None:
    text = model.encode_prompts(["a red cube on the grass"])
    null = model.encode_prompts([""])
    cfg = model.config
    structure = torch.rand(1, 1, cfg.frames, cfg.height, cfg.width) * 2 - 1
    h, w = model.latent_shape[-2:]
    still = torch.ones(cfg.frames, h, w, dtype=torch.bool)
    still[0] = False
    still[:, : h // 2] = False  # the top half moves

    def run(structure=structure, **knobs):
        generator = torch.Generator().manual_seed(0)
        return sample_latents(
            model, text, null, structure, steps=3, guidance=4.0, generator=generator, **knobs
        )

    plain = run()
    assert torch.equal(run(still_hold=0.0, still=still), plain)
    held = run(still_hold=1.0, still=still)
    bottom = held[..., h // 2 :, :]
    assert torch.allclose(bottom, bottom[:, :, :1].expand_as(bottom), atol=1e-5)
    assert not torch.allclose(held[..., : h // 2, :], held[:, :, :1, : h // 2, :], atol=1e-3)
    assert torch.equal(run(still_hold=1.0), plain), "without a still map nothing is still"
    assert torch.equal(run(None, still_hold=1.0, still=still), run(None)), (
        "a text-only shot has no clip to read stillness from: nothing is held"
    )
    with pytest.raises(ValueError, match="still_hold"):
        run(still_hold=1.5, still=still)


def _still_clip(model: StructureT2V) -> tuple[np.ndarray, np.ndarray]:
    """A depth ramp and a still textured clip at the model's size and length."""
    cfg = model.config
    depth = np.linspace(-1, 1, cfg.height * cfg.width, dtype=np.float32)
    depth = np.repeat(depth.reshape(1, cfg.height, cfg.width), cfg.frames, 0)
    return depth, np.repeat(_textured(cfg.height, cfg.width)[None], cfg.frames, 0)


@torch.no_grad()
def test_a_still_guide_clip_renders_a_still_shot_and_depth_alone_holds_nothing(model) -> None:
    from story.tasks.render.synthesize import synthesize

    depth, clip = _still_clip(model)
    frames = synthesize(
        model, "a red cube", depth, steps=3, seed=1, still_hold=1.0, guide_frames=clip
    )
    assert frames.shape[0] == model.config.frames
    assert (np.abs(frames.astype(int) - frames[:1].astype(int)) <= 1).all()
    free = synthesize(model, "a red cube", depth, steps=3, seed=1)
    assert np.abs(free.astype(int) - free[:1].astype(int)).max() > 1
    # Without the clip, depth cannot say what is still (a pan over flat ground): nothing is held.
    blind = synthesize(model, "a red cube", depth, steps=3, seed=1, still_hold=1.0)
    assert np.array_equal(blind, free)


def test_a_long_shots_held_cells_keep_the_prompt_frames_values_across_the_seam() -> None:
    """hold_prompt: a cell still from the window's first frame is held to the prompt frames
    (already shown by the window before), not to a mean that moves it at the seam."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 6, 4, 4, generator=g)
    prompt = torch.randn(1, 4, 2, 4, 4, generator=g)  # M = 2 prompt frames
    still = torch.zeros(6, 4, 4, dtype=torch.bool)
    still[1:, 0, 0] = True  # still the whole window, prompt frames included
    still[1:3, 1, 1] = True  # still over frames 0-2, then moves
    still[2:, 2, 2] = True  # moves at frame 1 (inside the prompt frames), still after
    held = hold_still(x, still, 1.0, prompt)
    anchor = prompt[:, :, :, 0, 0].mean(2, keepdim=True)
    assert torch.allclose(held[:, :, :, 0, 0], anchor.expand(-1, -1, 6))
    assert torch.allclose(
        held[:, :, 0:3, 1, 1], prompt[:, :, :, 1, 1].mean(2, keepdim=True).expand(-1, -1, 3)
    )
    assert torch.equal(held[:, :, 3:, 1, 1], x[:, :, 3:, 1, 1])
    # A run that starts after the prompt's first frame is the plain hold: its own mean.
    assert torch.allclose(held[..., 2, 2], hold_still(x, still, 1.0)[..., 2, 2])
    assert torch.equal(held[..., 3, 3], x[..., 3, 3])
    with pytest.raises(ValueError, match="prompt frames"):
        hold_still(x, still, 1.0, prompt[..., :2])


@torch.no_grad()
def test_a_still_clip_continues_as_one_still_shot_with_hold_prompt_and_not_without(model) -> None:
    from story.models.long_shot import ReuseDiffuse
    from story.tasks.render.synthesize import synthesize

    cfg = model.config
    total = 3 * cfg.frames
    depth = np.linspace(-1, 1, cfg.height * cfg.width, dtype=np.float32)
    depth = np.repeat(depth.reshape(1, cfg.height, cfg.width), total, 0)
    clip = np.repeat(_textured(cfg.height, cfg.width)[None], total, 0)

    def shot(**continuation):
        return synthesize(
            model,
            "a red cube",
            depth,
            steps=3,
            seed=1,
            still_hold=1.0,
            guide_frames=clip,
            continuation=ReuseDiffuse(**continuation),
        ).astype(int)

    seamless = shot(hold_prompt=True)
    assert seamless.shape[0] == total
    assert (np.abs(seamless - seamless[:1]) <= 1).all(), "a still clip is one still shot"
    seams = shot(long_hold=True)
    assert np.abs(seams - seams[:1]).max() > 1, "each window's mean differs at its seam"
    assert np.array_equal(seams[: cfg.frames], seamless[: cfg.frames]), (
        "the first window is the same"
    )
    # Since its sealed long-shot run a long shot does not hold unless asked (`long_hold`).
    free = shot()
    unheld = synthesize(model, "a red cube", depth, steps=3, seed=1, still_hold=0.0)
    assert np.array_equal(free, unheld.astype(int))


@torch.no_grad()
def test_a_still_clip_renders_still_pixels_and_without_the_clip_nothing_changes(model) -> None:
    from story.tasks.render.synthesize import synthesize

    depth, clip = _still_clip(model)

    def render(**knobs):
        # deflicker 0: the mean below is of the frames the model drew, before the delivered pass
        return synthesize(
            model, "a red cube", depth, steps=3, seed=1, still_hold=0.0, deflicker=0.0, **knobs
        )

    free = render()
    assert np.abs(free.astype(int) - free[:1].astype(int)).max() > 1
    held = render(pixel_hold=1.0, guide_frames=clip)
    # Every pixel of a still clip is held: the shot is one picture (uint8 rounding aside).
    assert (np.abs(held.astype(int) - held[:1].astype(int)) <= 1).all()
    # Each pixel is the mean of the frames the model drew there (where no frame was clipped
    # to 0..255: the hold averages the decoder's output before it is clipped).
    mean = free.astype(np.float64).mean(0)
    inside = ((free > 0) & (free < 255)).all(0)
    assert inside.mean() > 0.5
    assert np.abs(held[0] - mean)[inside].max() <= 1.0
    # Off, or without the clip (depth cannot say what is still), the render is untouched.
    assert np.array_equal(render(guide_frames=clip), free)
    assert np.array_equal(render(pixel_hold=1.0), free)
    with pytest.raises(ValueError, match="pixel_hold"):
        synthesize(model, "a red cube", depth, steps=3, seed=1, pixel_hold=2.0)
