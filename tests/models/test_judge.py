"""The judge network: input checks, resampling of any clip size, fp16 save / fp32 load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from story.models.judge import VideoJudge, load_judge, prepare_clips

VOCAB = {"shape": ["sphere", "cube"], "motion": ["static", "bouncing", "circling"]}


def _tiny() -> VideoJudge:
    torch.manual_seed(0)
    return VideoJudge(
        attributes=VOCAB,
        frames=4,
        size=16,
        appearance_frames=2,
        appearance_widths=(4, 8),
        motion_widths=(8, 8),
        embedding_dim=8,
    ).eval()


def test_any_clip_size_and_length_is_resampled_to_the_judge_input() -> None:
    short = np.zeros((2, 16, 16, 3), np.uint8)
    short[1] = 255
    long = np.random.default_rng(0).integers(0, 256, (9, 40, 24, 3), dtype=np.uint8)
    video = prepare_clips([short, long], frames=4, size=16)
    assert video.shape == (2, 4, 3, 16, 16)
    assert video.min() >= -1.0 and video.max() <= 1.0
    # 2 frames stretched to 4 keep their order: first half dark, second half bright.
    assert video[0, :2].max() == -1.0 and video[0, 2:].min() == 1.0
    with pytest.raises(ValueError, match="uint8"):
        prepare_clips([short.astype(np.float32)], 4, 16)


def test_outputs_one_logit_row_per_attribute_and_masks_for_every_frame() -> None:
    judge = _tiny()
    with torch.no_grad():
        out = judge(prepare_clips([np.zeros((4, 16, 16, 3), np.uint8)] * 3, 4, 16))
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {"shape": (3, 2), "motion": (3, 3)}
    assert out.embedding.shape == (3, 8)
    assert out.appearance_masks.shape == (3, 2, 8, 8)
    assert out.motion_masks.shape == (3, 4, 4, 4)
    with pytest.raises(ValueError, match="prepare_clips"):
        judge(torch.zeros(1, 3, 3, 16, 16))


def test_saved_half_loads_back_frozen_fp32_with_the_same_readings(tmp_path) -> None:
    judge = _tiny()
    video = prepare_clips(
        [np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)], 4, 16
    )
    judge.save_half(tmp_path / "judge")
    loaded = load_judge(tmp_path / "judge")
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.parameters())
    assert loaded.config.attributes == VOCAB
    with torch.no_grad():
        a, b = judge(video), loaded(video)
    for name in VOCAB:
        torch.testing.assert_close(a.logits[name], b.logits[name], atol=2e-2, rtol=2e-2)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_judge(tmp_path / "missing")
