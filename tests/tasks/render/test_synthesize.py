"""synthesize(): a prompt on a guide of any length and size -> uint8 frames, reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from story.models.t2v import random_tiny
from story.tasks.render.synthesize import load_t2v, synthesize
from tests.models.t2v_stubs import HashTextEncoder

CHECKPOINT = Path(__file__).resolve().parents[3] / "checkpoints" / "t2v-tiny"


@pytest.fixture(scope="module")
def model():
    bundle = random_tiny(text_dim=16, frames=2).eval()
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


def test_long_guides_continue_clip_by_clip(model) -> None:
    guide = np.random.default_rng(0).uniform(-1, 1, (5, 24, 20)).astype(np.float32)
    frames = synthesize(model, "a blue cone", guide, seed=2, steps=2, size=(32, 32))
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    first_window = synthesize(model, "a blue cone", guide[:2], seed=2, steps=2, size=(32, 32))
    assert np.array_equal(frames[:2], first_window)
    short = synthesize(model, "a blue cone", guide[:1], seed=2, steps=2)
    assert short.shape == (1, 16, 16, 3)


def test_long_guides_follow_the_continuation_parameters(model) -> None:
    from story.models.long_shot import ReuseDiffuse

    guide = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16)).astype(np.float32)
    kw = dict(seed=3, steps=3)
    reuse = synthesize(model, "a red ball", guide, continuation=ReuseDiffuse(1, 1.0, 0.6), **kw)
    fresh = synthesize(model, "a red ball", guide, continuation=ReuseDiffuse(1, 0.0, 0.0), **kw)
    assert np.array_equal(reuse[:2], fresh[:2])  # the first clip does not depend on them
    assert not np.array_equal(reuse[2:], fresh[2:])
    with pytest.raises(ValueError, match="prompt_frames"):
        synthesize(model, "a red ball", guide, continuation=ReuseDiffuse(2, 1.0, 0.6), **kw)


def test_text_only_and_bad_guides(model) -> None:
    assert synthesize(model, "a cube", None, frames=2, steps=2).shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="structure must be"):
        synthesize(model, "a cube", np.zeros((4, 16), np.float32), steps=2)
    with pytest.raises(ValueError, match="channels"):
        synthesize(model, "a cube", np.zeros((4, 3, 16, 16), np.float32), steps=2)


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINT.is_dir(), reason="no bundled checkpoint")
def test_bundled_model_renders_the_prompted_background_on_the_guide() -> None:
    from story.tasks.evaluation.quality import background_of
    from story.tasks.training.t2v_data import held_out_scenes, miniworld_structure

    model = load_t2v(CHECKPOINT, device="cpu")
    cfg = model.config
    for scene in held_out_scenes(2, cfg.frames, cfg.height, cfg.width):
        guide = miniworld_structure(scene.depth)
        frames = synthesize(model, scene.caption, guide, seed=0, steps=10)
        assert frames.shape == (cfg.frames, cfg.height, cfg.width, 3)
        assert background_of(frames) == scene.spec.background
        assert np.array_equal(frames, synthesize(model, scene.caption, guide, seed=0, steps=10))
