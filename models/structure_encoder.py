"""StructureEncoder: a per-frame CNN whose multi-scale features are added to the U-Net down path.

T2I-Adapter / VideoCrafter depth-adapter style: the structure map (depth, or C channels of edges
or motion) is encoded frame by frame into one feature map per U-Net down block, at that block's
resolution and width. The output projections start at zero so a new encoder leaves the base
model unchanged, which is what lets stage 2 train it against a frozen base.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class _ResBlock(nn.Module):
    """conv-norm-act twice with a skip, keeping width and size."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def blur_structure(structure: torch.Tensor, detail: int) -> torch.Tensor:
    """Structure (N, C, H, W) at detail level `detail`: 0 is as given, each level halves the
    resolution (area downsampling, bilinear back up), Gen-1's structure-fidelity knob t_s."""
    if detail <= 0:
        return structure
    h, w = structure.shape[-2:]
    factor = 2**detail
    small = F.interpolate(structure, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


class StructureEncoder(ModelMixin, ConfigMixin):
    """(N, C, H, W) structure frames -> one (N, c_i, H / f / 2**i, W / f / 2**i) map per level.

    With `detail_levels` > 0 the encoder is told the structure's detail level (an embedding
    added after the stem), so one model serves every level of `blur_structure`.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        downsample_factor: int = 4,
        hidden_channels: int = 32,
        norm_num_groups: int = 8,
        detail_levels: int = 0,
    ) -> None:
        super().__init__()
        if downsample_factor < 1 or downsample_factor & (downsample_factor - 1):
            raise ValueError(f"downsample_factor must be a power of two, got {downsample_factor}")
        stem: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.SiLU()]
        for _ in range(downsample_factor.bit_length() - 1):
            stem += [nn.Conv2d(hidden_channels, hidden_channels, 3, stride=2, padding=1), nn.SiLU()]
        self.stem = nn.Sequential(*stem)
        self.detail_embedding = (
            nn.Embedding(detail_levels, hidden_channels) if detail_levels else None
        )
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.projections = nn.ModuleList()
        width = hidden_channels
        for i, out in enumerate(block_out_channels):
            if i > 0:
                self.downs.append(nn.Conv2d(width, out, 3, stride=2, padding=1))
                width = out
            else:
                self.downs.append(nn.Conv2d(width, out, 3, padding=1))
                width = out
            self.levels.append(_ResBlock(width, min(norm_num_groups, width)))
            projection = nn.Conv2d(width, out, 1)
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
            self.projections.append(projection)

    def forward(self, structure: torch.Tensor, detail: int = 0) -> list[torch.Tensor]:
        """Features per U-Net down block, finest first, of structure at detail level `detail`."""
        if structure.dim() != 4 or structure.shape[1] != self.config.in_channels:
            raise ValueError(
                f"structure must be (N, {self.config.in_channels}, H, W), "
                f"got {tuple(structure.shape)}"
            )
        x = self.stem(blur_structure(structure, detail))
        if self.detail_embedding is not None:
            level = min(detail, self.config.detail_levels - 1)
            x = x + self.detail_embedding.weight[level][None, :, None, None]
        features = []
        for down, level, projection in zip(self.downs, self.levels, self.projections, strict=True):
            x = level(down(x))
            features.append(projection(x))
        return features
