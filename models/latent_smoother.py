"""A temporal stage in front of the per-frame decoder: the clip's latents, seen whole.

The autoencoder decodes each frame on its own, so whatever the U-Net's latents do from one frame
to the next reaches the pixels. On the miniature world a real clip through the autoencoder
flickers 1.13x the real clip, a render 1.5-1.6x: most of the excess is the latents' frame-to-frame
wobble, not the decoder. `LatentSmoother` is a small residual network of 3D convolutions
(time x height x width) over the normalised latents (B, C, T, h, w): `z + f(z)`, its last layer
zero at initialisation, so a new one is the identity and a checkpoint without one decodes as
before. It is trained on real clips' latents (the `smoother` stage of `train_t2v`): what it
learns to remove is what a real clip's latents do not do. The same idea as the temporal layers
Stable Video Diffusion adds to its decoder, kept in the latent space so the decoder, and every
measurement of its colours, stay as they are.

A guided smoother (`guided=True`) also sees where the shot's structure moves: beside each frame's
latents it is given the previous and the next frame's latents carried to this frame along the
structure's optical flow (`noise_warp.structure_flow`, the flow `noise_warp` already follows) and
the structure's depth on the latent grid, so what it averages is the same point of a moving
object rather than the object and where it was. Without a structure (text only) the neighbours
come as they are and the depth as zeros, which its training also shows it.

Saved as a checkpoint's optional `latent_smoother/` folder (`config.json` + safetensors).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from story.models.noise_warp import carry_frame, structure_flow

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class SmootherConfig:
    channels: int = 4
    hidden: int = 32
    layers: int = 3
    kernel_time: int = 3
    guided: bool = False
    """Also given the neighbouring frames carried along the structure's flow, and its depth."""

    @property
    def in_channels(self) -> int:
        return 3 * self.channels + 1 if self.guided else self.channels


class LatentSmoother(nn.Module):
    """`z + f(z)` over (B, C, T, h, w) latents; the identity until trained."""

    def __init__(self, config: SmootherConfig | None = None) -> None:
        super().__init__()
        self.config = config or SmootherConfig()
        c, hidden, kt = self.config.channels, self.config.hidden, self.config.kernel_time
        if self.config.layers < 2 or kt % 2 == 0:
            raise ValueError("LatentSmoother: at least 2 layers and an odd temporal kernel")
        blocks: list[nn.Module] = []
        width = self.config.in_channels
        for _ in range(self.config.layers - 1):
            blocks += [self._conv(width, hidden, kt), nn.SiLU()]
            width = hidden
        last = self._conv(width, c, kt)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        blocks.append(last)
        self.net = nn.Sequential(*blocks)

    @staticmethod
    def _conv(cin: int, cout: int, kt: int) -> nn.Conv3d:
        # Replicate padding: the first and last frames see themselves, not a black frame.
        return nn.Conv3d(cin, cout, (kt, 3, 3), padding=(kt // 2, 1, 1), padding_mode="replicate")

    def forward(self, latents: torch.Tensor, structure: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T, h, w) normalised latents -> the same, smoothed; `structure` (B, Cs, T, H, W)
        in [-1, 1] is read by a guided smoother only (None: a text-only shot)."""
        if latents.shape[2] == 1:  # a single image: nothing temporal to smooth
            return latents
        inputs = latents
        if self.config.guided:
            inputs = torch.cat([latents, *self.guide_inputs(latents, structure)], dim=1)
        return latents + self.net(inputs)

    @staticmethod
    def guide_inputs(
        latents: torch.Tensor, structure: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The previous and next frames' latents carried to each frame along the structure's
        flow (the clip's ends repeat themselves), and the structure's depth on the latent grid."""
        b, _, frames, h, w = latents.shape
        if structure is None:
            previous = torch.cat([latents[:, :, :1], latents[:, :, :-1]], dim=2)
            following = torch.cat([latents[:, :, 1:], latents[:, :, -1:]], dim=2)
            return previous, following, latents.new_zeros(b, 1, frames, h, w)
        if structure.shape[0] != b or structure.shape[2] != frames:
            raise ValueError(
                f"latent smoother: structure {tuple(structure.shape)} does not match the "
                f"latents {tuple(latents.shape)} in batch and frames"
            )
        forward = structure_flow(structure, (h, w)).to(latents)
        backward = structure_flow(structure.flip(2), (h, w)).to(latents)
        previous = [latents[:, :, 0]] + [
            carry_frame(latents[:, :, t - 1], forward[:, t]) for t in range(1, frames)
        ]
        # backward[:, k] is the reversed clip's flow at its frame k, our frame frames-1-k: where
        # each pixel of frame t was in frame t+1.
        following = [
            carry_frame(latents[:, :, t + 1], backward[:, frames - 1 - t])
            for t in range(frames - 1)
        ] + [latents[:, :, -1]]
        depth = F.adaptive_avg_pool3d(structure[:, :1].to(latents), (frames, h, w))
        return torch.stack(previous, dim=2), torch.stack(following, dim=2), depth

    def save_pretrained(self, folder: str | Path, half: bool = False) -> Path:
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        tensors = {k: (v.half() if half else v).contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(root / WEIGHTS_FILE))
        return root

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> LatentSmoother:
        root = Path(folder)
        try:
            config = SmootherConfig(**json.loads((root / CONFIG_FILE).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{root / CONFIG_FILE}: not a latent smoother config: {err}") from err
        model = cls(config)
        try:
            state = load_file(str(root / WEIGHTS_FILE))
        except (OSError, RuntimeError) as err:
            raise ValueError(f"{root / WEIGHTS_FILE}: unreadable weights: {err}") from err
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return model
