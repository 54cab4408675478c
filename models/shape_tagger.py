"""A small frame CNN that reads the main object's shape from a few frames of a clip.

Ingest stores its probabilities per clip (`shape_probs`) so a library without captions can still
be ranked on the shape a plot asks for; motion and camera come from the motion classifier. A
checkpoint is a folder (`config.json`, `model.safetensors` in fp16), like the other models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from story.models.video_text import prepare_clip

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TINY_SHAPE_TAGGER = "shape-tiny"


@dataclass
class ShapeTaggerConfig:
    """What builds the network: its labels, frames read per clip, input side and widths."""

    labels: list[str]
    frames: int = 3
    size: int = 64
    widths: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    notes: dict[str, Any] = field(default_factory=dict)


class ShapeTagger(nn.Module):
    """Strided convolutions per frame, global average + max pooling, logits averaged over time."""

    def __init__(self, config: ShapeTaggerConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 3
        for width in config.widths:
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1),
                nn.BatchNorm2d(width),
                nn.GELU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.GELU(),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, len(config.labels))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) floats in [0, 1] -> (B, labels) logits."""
        b, t = video.shape[:2]
        x = self.features((video.flatten(0, 1) - 0.5) / 0.25)
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)
        return self.head(pooled).view(b, t, -1).mean(1)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        # BatchNorm's step counter is an integer buffer; keep it integral.
        weights = {
            k: (self.state_dict()[k] if "num_batches" in k else v) for k, v in weights.items()
        }
        save_file(weights, str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ShapeTagger:
        path = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: shape tagger file missing")
        try:
            config = ShapeTaggerConfig(**json.loads((path / CONFIG_FILE).read_text()))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path / CONFIG_FILE}: not a shape tagger config: {exc}") from exc
        model = cls(config)
        weights = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(path / WEIGHTS_FILE)).items()
        }
        model.load_state_dict(weights)
        return model.eval()


class ShapeTaggerRunner:
    """Inference: clips ((T, H, W, 3) uint8) -> (N, labels) shape probabilities."""

    def __init__(self, folder: str | Path, batch_size: int = 32) -> None:
        self.folder = Path(folder)
        self.model = ShapeTagger.from_pretrained(self.folder)
        self.labels = list(self.model.config.labels)
        self.batch_size = batch_size

    @torch.inference_mode()
    def probs(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        config = self.model.config
        out = np.zeros((len(clips), len(self.labels)), np.float32)
        for start in range(0, len(clips), self.batch_size):
            batch = torch.stack(
                [
                    prepare_clip(clip, config.frames, config.size, start + i)
                    for i, clip in enumerate(clips[start : start + self.batch_size])
                ]
            )
            out[start : start + len(batch)] = self.model(batch).softmax(-1).numpy()
        return out


def shape_tagger_folder(settings: Any) -> Path | None:
    """The configured shape tagger folder: `tiny` (bundled; None if absent), a path, or `none`."""
    name = str(getattr(settings, "shape_model", "tiny") or "none")
    if name == "none":
        return None
    if name == "tiny":
        folder = Path(settings.checkpoints) / TINY_SHAPE_TAGGER
        return folder if (folder / WEIGHTS_FILE).is_file() else None
    folder = Path(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: shape tagger folder not found")
    return folder
