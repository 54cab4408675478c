"""The autoencoder's colour loss: blind to texture inside a window, not to a shifted hue."""

from __future__ import annotations

import torch

from story.models.losses import pooled_colour_error


def test_pooled_colour_error_sees_hue_not_stripes() -> None:
    red = torch.tensor([0.8, -0.7, -0.7]).view(1, 3, 1, 1)
    white = torch.ones(1, 3, 1, 1)
    rows = torch.arange(8).view(1, 1, 8, 1) % 2 == 0
    striped = torch.where(rows, red, white).expand(1, 3, 8, 8)
    swapped = torch.where(~rows, red, white).expand(1, 3, 8, 8)  # the stripes one row down
    orange = striped + torch.tensor([0.0, 0.4, -0.2]).view(1, 3, 1, 1)
    assert pooled_colour_error(swapped, striped, pool=4) < 1e-6
    assert (swapped - striped).abs().mean() > 0.5, "per pixel, the shifted stripes differ"
    assert abs(float(pooled_colour_error(orange, striped, pool=4)) - 0.2) < 1e-5
    weights = torch.zeros(1, 1, 8, 8)
    weights[..., :4, :4] = 1.0
    half = orange.clone()
    half[..., 4:, :] = striped[..., 4:, :]
    assert pooled_colour_error(half, striped, 4, weights) > pooled_colour_error(half, striped, 4)
