"""Visual encoders: one vector per clip, in a space a text query can search.

Default: the bundled video-text encoder (`checkpoints/video-text-tiny`, trained here on the
miniature world; `story.models.video_text`): frames plus motion, so a clip is found by what it
shows even without a caption. `STORY_VIDEO_TEXT_MODEL` names another video-text folder (a
full-size OpenCLIP / ViCLIP-style model saved in the same format) or `none`. A studio with plain
open_clip weights sets `STORY_OPEN_CLIP_MODEL` + `STORY_OPEN_CLIP_CHECKPOINT` (both local):
`OpenCLIPVisualEncoder` then averages frame embeddings, and a query searches them through the same
model's text tower.

`STORY_OPEN_CLIP_MODEL` is an open_clip architecture name (e.g. ViT-B-32) or the path of a model
config JSON (registered under its file stem), so custom architectures load the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from story.models.device import pick_device
from story.models.video_text_config import resolve_open_clip_arch, video_text_folder


@runtime_checkable
class VisualEncoder(Protocol):
    """Embeds clips (T, H, W, 3) uint8 into unit vectors of size `dim`, and texts beside them."""

    dim: int
    name: str

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...


def load_open_clip(
    arch: str, checkpoint: str | Path, device: torch.device
) -> tuple[torch.nn.Module, Any, str]:
    """Model (eval mode), its image preprocess transform and the resolved arch name."""
    import open_clip

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: open_clip checkpoint not found")
    arch = resolve_open_clip_arch(arch)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), device=device
        )
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not match open_clip architecture {arch!r}: {exc}") from exc
    return model.eval(), preprocess, arch


def _file_digest(path: Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


class OpenCLIPVisualEncoder:
    """An open_clip model from a local checkpoint: clip vectors and matching text vectors."""

    def __init__(
        self,
        arch: str,
        checkpoint: str | Path,
        device: str = "auto",
        frames_per_clip: int = 8,
    ) -> None:
        self.device = pick_device(device)
        self.model, self.preprocess, self.arch = load_open_clip(arch, checkpoint, self.device)
        import open_clip

        self.tokenizer = open_clip.get_tokenizer(self.arch)
        self.frames_per_clip = frames_per_clip
        self.dim = int(self.model.text_projection.shape[-1])
        self.name = f"open_clip:{self.arch}@{_file_digest(Path(checkpoint))}"
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    def _frames_tensor(self, clip: np.ndarray, index: int) -> torch.Tensor:
        from PIL import Image

        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or len(clip) == 0:
            raise ValueError(
                f"clip {index}: expected a non-empty (T, H, W, 3) uint8 array, got "
                f"{clip.dtype} {tuple(clip.shape)}"
            )
        picks = np.unique(np.linspace(0, len(clip) - 1, self.frames_per_clip).round().astype(int))
        return torch.stack([self.preprocess(Image.fromarray(clip[i])) for i in picks])

    @torch.inference_mode()
    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit vectors: the mean of evenly sampled frame embeddings."""
        out = np.zeros((len(clips), self.dim), np.float32)
        for i, clip in enumerate(clips):
            frames = self._frames_tensor(np.asarray(clip), i).to(self.device)
            per_frame = self.model.encode_image(frames, normalize=True).float()
            out[i] = F.normalize(per_frame.mean(0), dim=-1).cpu().numpy()
        return out

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 unit vectors of texts, comparable with `embed_clips`."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got a single string")
        ids = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(ids, normalize=True).float().cpu().numpy()


def load_visual_encoder(settings: Any) -> VisualEncoder | None:
    """The configured visual encoder: explicit open_clip weights, else the video-text model."""
    model = getattr(settings, "open_clip_model", None)
    checkpoint = getattr(settings, "open_clip_checkpoint", None)
    device = getattr(settings, "device", "auto")
    if checkpoint is not None:
        if not model:
            raise ValueError(
                f"open_clip_checkpoint is set ({checkpoint}) but open_clip_model is not: "
                "name the architecture (e.g. ViT-B-32) or a model config JSON"
            )
        return OpenCLIPVisualEncoder(str(model), checkpoint, device=device)
    folder = video_text_folder(settings)
    if folder is None:
        return None
    from story.models.video_text import VideoTextEncoder

    return VideoTextEncoder(folder, device=device)
