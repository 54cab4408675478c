"""A video-text checkpoint's configuration and tokenizer, without torch.

`VideoTextConfig` is config.json of a video-text folder (the open_clip model config inside it);
`VideoTextTokenizer` is open_clip's CLIP BPE cut to the model's context and mapped to its compact
vocabulary. Both are plain numpy so a query can be embedded without importing torch
(`story.models.numpy_text`); `story.models.video_text` builds the torch model from them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from story.models.bpe_tokenizer import BPETokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_VIDEO_TEXT = "video-text-tiny"
log = logging.getLogger(__name__)


@dataclass
class VideoTextConfig:
    """Everything that builds the model; saved as config.json beside the weights."""

    open_clip: dict[str, Any]
    arch: str = "story-video-text-tiny"
    frames: int = 8
    appearance_frames: int = 4
    motion_size: int = 32
    motion_width: int = 48
    temporal_layers: int = 1
    input_size: int | None = None
    vocab: list[int] | None = None
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames < 1 or not 1 <= self.appearance_frames <= self.frames:
            raise ValueError(
                f"frames={self.frames}, appearance_frames={self.appearance_frames}: need "
                "1 <= appearance_frames <= frames"
            )
        if self.motion_size and self.frames < 2:
            raise ValueError("a motion stream needs at least 2 frames")
        self.mean = tuple(self.mean)
        self.std = tuple(self.std)

    @property
    def image_size(self) -> int:
        size = self.open_clip["vision_cfg"].get("image_size", 224)
        return int(size if isinstance(size, int) else size[0])

    @property
    def frame_size(self) -> int:
        """Side of the square frames a clip is resized to before either tower reads it."""
        return int(self.input_size or self.image_size)

    @property
    def embed_dim(self) -> int:
        return int(self.open_clip["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(self.open_clip["text_cfg"].get("context_length", 77))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoTextConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"video-text config has unknown keys {sorted(unknown)}")
        return cls(**data)


class VideoTextTokenizer:
    """open_clip's BPE, cut to the model's context and mapped to its compact vocabulary."""

    def __init__(self, config: VideoTextConfig) -> None:
        self.bpe = BPETokenizer()
        self.context_length = config.context_length
        self.table: np.ndarray | None = None
        if config.vocab is not None:
            self.table = compact_table(config.vocab, self.bpe.vocab_size)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(N, context) int64 ids; zero-padded like open_clip."""
        ids = self.bpe.batch(list(texts), self.context_length)
        return ids if self.table is None else self.table[ids]


def compact_table(kept: Sequence[int], full_size: int) -> np.ndarray:
    """Full BPE id -> compact id. 0 stays padding, kept ids follow, unknown tokens share one id,
    and the end-of-text token (the largest full id) comes last so argmax pooling finds it."""
    eot = full_size - 1
    body = [int(i) for i in kept if int(i) not in (0, eot)]
    unknown = len(body) + 1
    table = np.full(full_size, unknown, dtype=np.int64)
    table[0] = 0
    for compact, full in enumerate(body, start=1):
        table[full] = compact
    table[eot] = unknown + 1
    return table


def compact_vocab_size(kept: Sequence[int], full_size: int) -> int:
    """Rows of the compact token table: padding, kept tokens, unknown, end-of-text."""
    return int(compact_table(kept, full_size).max()) + 1


def video_text_folder(settings: Any) -> Path | None:
    """The configured video-text checkpoint folder (None for `none`, or a missing bundled one)."""
    name = str(getattr(settings, "video_text_model", "none") or "none")
    if name == "none":
        return None
    if name == "tiny":
        folder = Path(settings.checkpoints) / TINY_VIDEO_TEXT
        if not (folder / "model.safetensors").is_file():
            log.warning("%s: no bundled video-text encoder; clips get no visual vector", folder)
            return None
        return folder
    folder = Path(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: video-text model folder not found")
    return folder


def configured_dim(settings: Any) -> int | None:
    """Width of the configured video-text vectors, read from config.json (None: none set).

    Cheap (no torch): a driver sizing the table's column needs this, not the model. An explicit
    open_clip checkpoint returns -1: its width is only known by loading it.
    """
    if getattr(settings, "open_clip_checkpoint", None) is not None:
        return -1
    folder = video_text_folder(settings)
    if folder is None:
        return None
    import json

    return VideoTextConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text())).embed_dim


def resolve_open_clip_arch(arch: str) -> str:
    """Register a config JSON path with open_clip and return its name; pass names through."""
    import open_clip

    if arch.endswith(".json"):
        config = Path(arch)
        if not config.is_file():
            raise FileNotFoundError(f"{config}: open_clip model config not found")
        open_clip.add_model_config(config)
        arch = config.stem
    if open_clip.get_model_config(arch) is None:
        raise ValueError(f"{arch!r}: unknown open_clip architecture (not in open_clip's registry)")
    return arch
