"""Video-text encoder: an open_clip model read frame by frame, with motion made visible.

A clip is embedded from `frames` evenly spaced frames: `appearance_frames` of them go through the
open_clip image tower, a small transformer mixes those frame vectors over time (0 layers: their
mean, as CLIP4Clip's meanP), and a motion stream (3D convolutions over the grey frames and their
differences, pooled to a coarse space-time grid so direction, expansion and rhythm survive) adds
what a single frame cannot show: towards / away, bouncing, circling, pans and zooms. Text goes
through the same open_clip model's text tower, so a query searches clips in one space.

The architecture is an open_clip model config registered with open_clip under its `arch` name;
the bundled tiny model keeps only the BPE tokens its training text used (`vocab`, a compact id
table with the end-of-text token last, so open_clip's argmax pooling still finds it; other
tokens read as one unknown token). A checkpoint is a folder: `config.json` (this config, the
open_clip config inside) and `model.safetensors`. Full-size OpenCLIP weights load the same way
(`VideoTextModel.from_open_clip`), with mean pooling and no motion stream unless trained.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from story.models.device import pick_device
from story.models.video_text_config import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    VideoTextConfig,
    VideoTextTokenizer,
    resolve_open_clip_arch,
)


def register_arch(arch: str, open_clip_config: dict[str, Any]) -> None:
    """Register `open_clip_config` with open_clip under `arch` (a JSON file named after it)."""
    import open_clip

    if open_clip.get_model_config(arch) == open_clip_config:
        return
    folder = Path(tempfile.mkdtemp(prefix="story-open-clip-"))
    (folder / f"{arch}.json").write_text(json.dumps(open_clip_config))
    open_clip.add_model_config(folder / f"{arch}.json")


class MotionStream(nn.Module):
    """Grey frames and their differences -> 3D convolutions -> a coarse (time, 2, 2) grid -> dim.

    Pooling to a 2x2 grid rather than to one point keeps where motion happens, so a zoom's
    radial flow does not cancel out and left is not confused with right.
    """

    def __init__(self, frames: int, size: int, width: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.steps = max(1, frames // 2)
        w = width
        self.net = nn.Sequential(
            nn.Conv3d(2, w // 2, 3, stride=(1, 2, 2), padding=1),
            nn.GroupNorm(4, w // 2),
            nn.GELU(),
            nn.Conv3d(w // 2, w, 3, stride=(1, 2, 2), padding=1),
            nn.GroupNorm(8, w),
            nn.GELU(),
            nn.Conv3d(w, w, 3, stride=(2, 2, 2), padding=1),
            nn.GroupNorm(8, w),
            nn.GELU(),
        )
        self.pool = nn.AdaptiveAvgPool3d((self.steps, 2, 2))
        self.proj = nn.Linear(w * self.steps * 4, dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) in [0, 1] -> (B, dim)."""
        b, t = video.shape[:2]
        grey = video.mean(2)
        grey = F.interpolate(grey, size=(self.size, self.size), mode="area")
        diff = (grey[:, 1:] - grey[:, :-1]) * 4.0
        x = torch.stack([grey[:, 1:] - 0.5, diff], dim=1)
        return self.proj(self.pool(self.net(x)).flatten(1))


class VideoTextModel(nn.Module):
    """An open_clip model plus a temporal head and a motion stream (see the module docstring)."""

    def __init__(self, config: VideoTextConfig) -> None:
        super().__init__()
        import open_clip

        self.config = config
        register_arch(config.arch, config.open_clip)
        self.clip = open_clip.create_model(config.arch, pretrained=None)
        dim = config.embed_dim
        if config.temporal_layers:
            self.time_embedding = nn.Parameter(torch.zeros(config.appearance_frames, dim))
            layer = nn.TransformerEncoderLayer(
                dim,
                nhead=max(1, dim // 32),
                dim_feedforward=2 * dim,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.temporal = nn.TransformerEncoder(
                layer, config.temporal_layers, enable_nested_tensor=False
            )
        self.motion = (
            MotionStream(config.frames, config.motion_size, config.motion_width, dim)
            if config.motion_size
            else None
        )
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 1, 3, 1, 1), False)

    def appearance_indices(self, frames: int) -> list[int]:
        picks = np.linspace(0, frames - 1, self.config.appearance_frames).round().astype(int)
        return [int(i) for i in picks]

    def encode_video(self, video: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """video (B, T, 3, H, W) floats in [0, 1] (square frames) -> (B, dim)."""
        b, t = video.shape[:2]
        picks = video[:, self.appearance_indices(t)].flatten(0, 1)
        size = self.config.image_size
        if picks.shape[-1] != size or picks.shape[-2] != size:
            picks = F.interpolate(picks, size=(size, size), mode="bilinear", antialias=True)
        x = (picks - self.mean[0]) / self.std[0]
        frames = self.clip.encode_image(x).view(b, len(self.appearance_indices(t)), -1)
        if self.config.temporal_layers:
            frames = self.temporal(frames + self.time_embedding)
        vector = frames.mean(1)
        if self.motion is not None:
            vector = vector + self.motion(video)
        return F.normalize(vector, dim=-1) if normalize else vector

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Token ids (B, context) from `VideoTextTokenizer` -> (B, dim)."""
        return self.clip.encode_text(ids, normalize=normalize)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write config.json and model.safetensors (weights cast to `dtype`)."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        state = {
            k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
            for k, v in self.state_dict().items()
        }
        save_file(state, out / WEIGHTS_FILE)
        return out

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> VideoTextModel:
        """Load a folder written by `save_pretrained` (fp16 weights come back as fp32)."""
        from safetensors.torch import load_file

        root = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root / name}: video-text checkpoint file not found")
        try:
            config = VideoTextConfig.from_dict(json.loads((root / CONFIG_FILE).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{root / CONFIG_FILE}: not a video-text config: {exc}") from exc
        model = cls(config)
        state = {k: v.float() for k, v in load_file(root / WEIGHTS_FILE).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{root / WEIGHTS_FILE}: weights do not fit the config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.eval()

    @classmethod
    def from_open_clip(
        cls, arch: str, checkpoint: str | Path, frames: int = 8, appearance_frames: int = 8
    ) -> VideoTextModel:
        """Full-size OpenCLIP weights (a local file) as a video-text model with mean pooling."""
        import open_clip

        arch = resolve_open_clip_arch(arch)
        config = VideoTextConfig(
            open_clip=open_clip.get_model_config(arch),
            arch=arch,
            frames=frames,
            appearance_frames=appearance_frames,
            motion_size=0,
            temporal_layers=0,
        )
        model = cls(config)
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: open_clip checkpoint not found")
        open_clip.load_checkpoint(model.clip, str(path))
        return model.eval()


def prepare_clip(clip: np.ndarray, frames: int, size: int, index: int = 0) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (frames, 3, size, size) floats in [0, 1]: evenly spaced frames,
    centre-cropped to a square and resized with antialiasing."""
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or len(clip) == 0:
        raise ValueError(
            f"clip {index}: expected a non-empty (T, H, W, 3) uint8 array, got "
            f"{clip.dtype} {tuple(clip.shape)}"
        )
    picks = np.linspace(0, len(clip) - 1, frames).round().astype(int)
    h, w = clip.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(clip[picks, top : top + side, left : left + side]))
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if side != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.clamp(0.0, 1.0)


def folder_digest(folder: Path, length: int = 12) -> str:
    """Short hash of a checkpoint's config and weights."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:length]


class VideoTextEncoder:
    """Inference wrapper: clips and texts -> unit vectors in one space (a `VisualEncoder`)."""

    def __init__(self, folder: str | Path, device: str = "auto", batch_size: int = 16) -> None:
        self.folder = Path(folder)
        self.device = pick_device(device)
        self.model = VideoTextModel.from_pretrained(self.folder).to(self.device)
        self.tokenizer = VideoTextTokenizer(self.model.config)
        self.dim = self.model.config.embed_dim
        self.batch_size = batch_size
        self.name = f"video-text:{self.model.config.arch}@{folder_digest(self.folder)}"
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    def prepare(self, clip: np.ndarray) -> np.ndarray:
        """The frames this encoder reads, as (frames, S, S, 3) uint8: what ingest keeps."""
        config = self.model.config
        x = prepare_clip(clip, config.frames, config.frame_size)
        return (x.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()

    @torch.inference_mode()
    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit vectors, one per (T, H, W, 3) uint8 clip."""
        config = self.model.config
        out = np.zeros((len(clips), self.dim), np.float32)
        for start in range(0, len(clips), self.batch_size):
            batch = torch.stack(
                [
                    prepare_clip(clip, config.frames, config.frame_size, start + i)
                    for i, clip in enumerate(clips[start : start + self.batch_size])
                ]
            ).to(self.device)
            vectors = self.model.encode_video(batch).float().cpu().numpy()
            out[start : start + len(vectors)] = vectors
        return out

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 unit vectors of texts, comparable with `embed_clips`."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got a single string")
        ids = torch.from_numpy(self.tokenizer(list(texts))).to(self.device)
        return self.model.encode_text(ids).float().cpu().numpy()
