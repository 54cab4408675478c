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

Saved as a checkpoint's optional `latent_smoother/` folder (`config.json` + safetensors).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class SmootherConfig:
    channels: int = 4
    hidden: int = 32
    layers: int = 3
    kernel_time: int = 3


class LatentSmoother(nn.Module):
    """`z + f(z)` over (B, C, T, h, w) latents; the identity until trained."""

    def __init__(self, config: SmootherConfig | None = None) -> None:
        super().__init__()
        self.config = config or SmootherConfig()
        c, hidden, kt = self.config.channels, self.config.hidden, self.config.kernel_time
        if self.config.layers < 2 or kt % 2 == 0:
            raise ValueError("LatentSmoother: at least 2 layers and an odd temporal kernel")
        blocks: list[nn.Module] = []
        width = c
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

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[2] == 1:  # a single image: nothing temporal to smooth
            return latents
        return latents + self.net(latents)

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
