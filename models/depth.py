"""Per-frame depth estimators: one interface, the bundled tiny net and the transformers DPT family.

Every estimator returns MiDaS-style disparity (near = large) normalised to [-1, 1] with
`normalize_structure`, resized to the synthesis size, so the structure encoder sees one
convention whatever model produced the map.

Supported full-size weights: the transformers DPT family (`DPTForDepthEstimation`), i.e. DPT-large
and DPT-hybrid (BiT backbone, `is_hybrid=True`) MiDaS v3 checkpoints saved with `save_pretrained`
next to their image processor. MiDaS v2.1 small (a timm EfficientNet-Lite in torch hub format) is
not a transformers model and is not loaded here.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from story.models.device import pick_device
from story.models.structure_norm import normalize_structure
from story.models.zoo import depth_folder

WEIGHT_SUFFIXES = (".safetensors", ".bin")
HASHED_FILES = ("config.json", "preprocessor_config.json")
MODEL_ID_HASH_LENGTH = 12
TINY_WEIGHTS = "model.safetensors"


def checkpoint_hash(folder: str | Path) -> str:
    """Sha256 of a checkpoint folder's config and weight files (not of notes such as metrics)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: checkpoint folder not found")
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and (p.name in HASHED_FILES or p.suffix in WEIGHT_SUFFIXES)
    )
    if not files:
        raise FileNotFoundError(f"{root}: no config or weight files in checkpoint folder")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def check_frames(frames: np.ndarray) -> None:
    """Reject anything but a (T, H, W, 3) uint8 array with at least one frame."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        kind = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a uint8 numpy array, got {kind}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}")


class DepthEstimator(ABC):
    """Frames in, normalised disparity out; batched over frames, no grad, on the chosen device."""

    model_id: str
    batch_size: int = 16

    def __init__(self, device: str = "auto") -> None:
        self.device = pick_device(device)

    @abstractmethod
    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 on the device -> (B, h, w) raw disparity at the model's resolution."""

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> torch.Tensor:
        """Raw disparity (T, h, w) at the model's own resolution, on the CPU, in frame batches."""
        check_frames(frames)
        outputs = []
        for start in range(0, frames.shape[0], self.batch_size):
            batch = torch.tensor(frames[start : start + self.batch_size])
            outputs.append(self._forward(batch.to(self.device)).float().cpu())
        return torch.cat(outputs)

    def estimate(
        self,
        frames: np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        normalize: str = "frame",
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, h, w) float32 disparity in [-1, 1]; (h, w) = size or (H, W)."""
        if normalize not in ("frame", "clip"):
            raise ValueError(f"normalize must be 'frame' or 'clip', got {normalize!r}")
        raw = self.predict(frames)
        target = tuple(size) if size is not None else tuple(frames.shape[1:3])
        if len(target) != 2 or min(target) < 1:
            raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
        resized = F.interpolate(raw[:, None], size=target, mode="bilinear", align_corners=False)
        return normalize_structure(resized[:, 0], mode=normalize).numpy().astype(np.float32)


# --- the bundled tiny network -------------------------------------------------------------------


@dataclass(frozen=True)
class TinyDepthConfig:
    """Shape of the tiny depth U-Net and the resolution it was trained at."""

    channels: tuple[int, ...] = (16, 32, 64, 96)
    groups: int = 4
    train_size: int = 64

    @classmethod
    def from_json(cls, path: Path) -> TinyDepthConfig:
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "tiny-depth-unet", **asdict(self)}


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.SiLU(),
        )


class TinyDepthNet(nn.Module):
    """A small U-Net from RGB to disparity (scale and shift free, as MiDaS predicts)."""

    def __init__(self, config: TinyDepthConfig) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.encoders = nn.ModuleList(
            _ConvBlock(c_in, c_out, config.groups)
            for c_in, c_out in zip((3, *chans[:-1]), chans, strict=True)
        )
        self.decoders = nn.ModuleList(
            _ConvBlock(chans[i + 1] + chans[i], chans[i], config.groups)
            for i in reversed(range(len(chans) - 1))
        )
        self.head = nn.Conv2d(chans[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (one halving per encoder level)."""
        return 2 ** (len(self.config.channels) - 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, H, W) disparity."""
        skips = []
        x = rgb
        for level, encoder in enumerate(self.encoders):
            if level:
                x = F.avg_pool2d(x, 2)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)[:, 0]

    def save(self, folder: str | Path) -> None:
        """config.json + model.safetensors, the format `TinyDepthEstimator` loads."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / TINY_WEIGHTS))

    @classmethod
    def load(cls, folder: str | Path) -> TinyDepthNet:
        root = Path(folder)
        for name in ("config.json", TINY_WEIGHTS):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root}: tiny depth checkpoint lacks {name}")
        net = cls(TinyDepthConfig.from_json(root / "config.json"))
        net.load_state_dict(load_file(str(root / TINY_WEIGHTS)))
        return net.eval()


def model_input_size(height: int, width: int, short_side: int, multiple: int) -> tuple[int, int]:
    """Resize so the short side is `short_side`, keep the aspect, round to the net's multiple."""
    scale = short_side / min(height, width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class TinyDepthEstimator(DepthEstimator):
    """The bundled default: the tiny U-Net trained on the miniature world's exact depth."""

    batch_size = 16

    def __init__(self, folder: str | Path, device: str = "auto") -> None:
        super().__init__(device)
        self.folder = Path(folder)
        self.model_id = f"tiny-{checkpoint_hash(self.folder)[:MODEL_ID_HASH_LENGTH]}"
        self.net = TinyDepthNet.load(self.folder).to(self.device)

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[1:3]
        target = model_input_size(h, w, self.net.config.train_size, self.net.multiple)
        if target != (h, w):
            # Resizing the uint8 frames first is ~20x cheaper than resizing floats at 720p.
            small = F.interpolate(
                frames.permute(0, 3, 1, 2), size=target, mode="bilinear", antialias=True
            )
            frames = small.permute(0, 2, 3, 1)
        return self.net(frames_to_unit(frames))


# --- transformers DPT / MiDaS v3 ----------------------------------------------------------------


class DPTDepthEstimator(DepthEstimator):
    """DPT (large or hybrid) from a local `save_pretrained` folder with its image processor."""

    batch_size = 4

    def __init__(self, folder: str | Path, device: str = "auto") -> None:
        from transformers import DPTForDepthEstimation, DPTImageProcessor

        super().__init__(device)
        self.folder = Path(folder)
        for name in ("config.json", "preprocessor_config.json"):
            if not (self.folder / name).is_file():
                raise FileNotFoundError(f"{self.folder}: DPT checkpoint lacks {name}")
        self.processor = DPTImageProcessor.from_pretrained(self.folder, local_files_only=True)
        self.model = DPTForDepthEstimation.from_pretrained(self.folder, local_files_only=True)
        self.model.to(self.device).eval()
        kind = "dpt-hybrid" if self.model.config.is_hybrid else "dpt"
        self.model_id = f"{kind}-{checkpoint_hash(self.folder)[:MODEL_ID_HASH_LENGTH]}"

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        images = list(frames.permute(0, 3, 1, 2).cpu())
        inputs = self.processor(images=images, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        return self.model(pixel_values=pixels).predicted_depth


def is_dpt_folder(folder: Path) -> bool:
    """True when the folder holds a transformers DPT config."""
    config = folder / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "dpt"


def load_depth_estimator(
    spec: str | Path, checkpoints: str | Path | None = None, device: str = "auto"
) -> DepthEstimator:
    """`tiny` -> <checkpoints>/depth-tiny; a folder -> DPT or tiny by its config.json."""
    folder = Path(spec)
    if str(spec) == "tiny":
        if checkpoints is None:
            raise ValueError("the 'tiny' depth preset needs the checkpoints folder")
        folder = depth_folder(spec, checkpoints)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: depth model folder not found (spec {spec!r})")
    if is_dpt_folder(folder):
        return DPTDepthEstimator(folder, device=device)
    return TinyDepthEstimator(folder, device=device)


def resolve_depth_model_id(spec: str | Path, checkpoints: str | Path | None = None) -> str:
    """The model id `load_depth_estimator(spec)` would report, without loading weights."""
    folder = depth_folder(spec, checkpoints) if checkpoints else Path(spec)
    if is_dpt_folder(folder):
        config = json.loads((folder / "config.json").read_text())
        kind = "dpt-hybrid" if config.get("is_hybrid") else "dpt"
    else:
        kind = "tiny"
    return f"{kind}-{checkpoint_hash(folder)[:MODEL_ID_HASH_LENGTH]}"


def param_count(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
