"""StructureEncoder: one feature map per U-Net level, zero at initialisation, any channel count."""

from __future__ import annotations

import pytest
import torch

from story.models.structure_encoder import StructureEncoder


def test_levels_match_unet_widths_and_resolutions() -> None:
    encoder = StructureEncoder(1, (16, 32, 32), downsample_factor=4, hidden_channels=8)
    features = encoder(torch.randn(6, 1, 32, 32))
    assert [tuple(f.shape) for f in features] == [(6, 16, 8, 8), (6, 32, 4, 4), (6, 32, 2, 2)]


def test_new_encoder_adds_nothing_until_trained() -> None:
    encoder = StructureEncoder(1, (16, 32), downsample_factor=2, hidden_channels=8)
    assert all(torch.count_nonzero(f) == 0 for f in encoder(torch.randn(2, 1, 16, 16)))


def test_multi_channel_structure_and_bad_input() -> None:
    encoder = StructureEncoder(3, (8, 16), downsample_factor=1, hidden_channels=8)
    assert encoder(torch.randn(1, 3, 8, 8))[1].shape == (1, 16, 4, 4)
    with pytest.raises(ValueError, match="structure must be"):
        encoder(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="power of two"):
        StructureEncoder(1, (8,), downsample_factor=3)
