"""The video U-Net: diffusers `UNet3DConditionModel` plus structure features added to its down path.

`UNet3DConditionModel.forward` only accepts ControlNet-style residuals, which are added to the skip
connections after the whole down path has run. The paper (and T2I-Adapter / VideoCrafter's depth
adapter) instead adds the structure features to the down-block hidden states, so they also flow
into every later block. `StructureInjection` does that with forward hooks on the last temporal
layer of each down block (the point diffusers' own 2D U-Net uses for `down_intrablock_additional_
residuals`): the sum feeds both the skip connection and the downsampler. Hooks keep the stock
diffusers module tree and checkpoint layout untouched; with no features set they are a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import UNet3DConditionModel
from torch import nn


def tiny_unet_config(
    channels: tuple[int, ...] = (32, 64, 64),
    cross_attention_dim: int = 384,
    latent_channels: int = 4,
    sample_size: int = 8,
    heads: int = 4,
    layers_per_block: int = 1,
) -> dict:
    """A small `UNet3DConditionModel` config: cross-attention in every block but the last."""
    down = ["CrossAttnDownBlock3D"] * (len(channels) - 1) + ["DownBlock3D"]
    up = ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * (len(channels) - 1)
    return {
        "sample_size": sample_size,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": list(channels),
        "layers_per_block": layers_per_block,
        "norm_num_groups": min(16, channels[0]),
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": heads,
    }


def build_unet(config: dict) -> UNet3DConditionModel:
    """A randomly initialised `UNet3DConditionModel` from a config dict."""
    return UNet3DConditionModel(**config)


def load_unet(folder: str | Path, dtype: torch.dtype = torch.float32) -> UNet3DConditionModel:
    """Load a `UNet3DConditionModel` saved with `save_pretrained` from a local folder."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: no config.json, not a UNet3DConditionModel folder")
    return UNet3DConditionModel.from_pretrained(root, torch_dtype=dtype, local_files_only=True)


def injection_points(unet: UNet3DConditionModel) -> list[nn.Module]:
    """The last temporal layer of each down block, whose output is the block's level feature."""
    points = []
    for block in unet.down_blocks:
        temporal = getattr(block, "temp_attentions", None) or block.temp_convs
        points.append(temporal[-1])
    return points


class StructureInjection:
    """Adds per-level structure features to the U-Net's down-block hidden states while set.

    Each hooked layer keeps a reference to its injection, so a deep copy of the U-Net (or of a
    bundle holding both) hooks into the copied injection, not the original one.
    """

    def __init__(self, unet: UNet3DConditionModel) -> None:
        self.features: list[torch.Tensor] | None = None
        self.scale = 1.0
        self.calls = 0
        self._handles = []
        for level, point in enumerate(injection_points(unet)):
            point._structure_injection = self
            point._structure_level = level
            self._handles.append(point.register_forward_hook(_add_structure))

    def add(self, level: int, output):
        """The hooked layer's output with this level's feature added (unchanged when unset)."""
        if self.features is None:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        feature = self.features[level]
        if feature.shape[0] != hidden.shape[0]:
            feature = feature.repeat(hidden.shape[0] // feature.shape[0], 1, 1, 1)
        hidden = hidden + self.scale * feature.to(hidden.dtype)
        if level == 0:
            self.calls += 1
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    @contextmanager
    def active(self, features: Sequence[torch.Tensor] | None, scale: float = 1.0) -> Iterator[None]:
        """Inside the block U-Net calls get `scale * features` added; None or 0 adds nothing."""
        self.features = list(features) if features is not None and scale != 0 else None
        self.scale = scale
        try:
            yield
        finally:
            self.features = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _add_structure(module: nn.Module, _inputs: tuple, output):
    return module._structure_injection.add(module._structure_level, output)


def video_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W), the per-frame layout inside the U-Net blocks."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
