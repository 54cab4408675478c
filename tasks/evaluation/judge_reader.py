"""Read clips with the frozen judge: attribute names, probabilities, embeddings, object masks.

`JudgeReader.load()` opens the committed `checkpoints/judge-tiny` (or any judge folder); clips of
any size and length are resampled to the judge's own input first, so renders of a 32x32 x 8 model
and of a 64x64 x 16 one are read alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from story.models.judge import VideoJudge, load_judge, prepare_clips
from story.tasks.hashing import sha256_file

JUDGE_PRESET = "judge-tiny"
ID_LENGTH = 12
NOTES = "metrics.json"


@dataclass
class JudgeReading:
    """What the judge read from N clips: class names and probabilities per attribute, the
    (N, D) embedding the Frechet distance uses."""

    labels: dict[str, list[str]]
    probabilities: dict[str, np.ndarray]
    embeddings: np.ndarray

    def row(self, i: int) -> dict[str, str]:
        """The attributes read from clip i."""
        return {name: values[i] for name, values in self.labels.items()}


def judge_id(folder: str | Path) -> str:
    """`<folder name>@<sha256 prefix>` of the judge's config and weights (not its notes)."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(root.glob("*")):
        if path.suffix in {".json", ".safetensors"} and path.name != NOTES:
            digest.update(path.name.encode() + b"\0" + sha256_file(path).encode())
    return f"{root.name}@{digest.hexdigest()[:ID_LENGTH]}"


class JudgeReader:
    """A frozen judge plus batching; `model_id` names the exact weights in every report."""

    def __init__(self, judge: VideoJudge, model_id: str, batch_size: int = 32) -> None:
        self.judge = judge.eval()
        self.model_id = model_id
        self.batch_size = batch_size
        self.vocab: dict[str, list[str]] = dict(judge.config.attributes)

    @classmethod
    def load(cls, folder: str | Path | None = None, batch_size: int = 32) -> JudgeReader:
        """The judge in `folder` (default: the committed judge-tiny checkpoint)."""
        if folder is None:
            from story.tasks.settings import get_settings

            folder = Path(get_settings().checkpoints) / JUDGE_PRESET
        return cls(load_judge(folder), judge_id(folder), batch_size)

    @torch.no_grad()
    def read(self, clips: np.ndarray | list[np.ndarray]) -> JudgeReading:
        """Attributes and embeddings of uint8 clips (N, T, H, W, 3), any T, H, W."""
        cfg = self.judge.config
        probs: dict[str, list[np.ndarray]] = {name: [] for name in self.vocab}
        embeddings = []
        for start in range(0, len(clips), self.batch_size):
            video = prepare_clips(clips[start : start + self.batch_size], cfg.frames, cfg.size)
            out = self.judge(video)
            embeddings.append(out.embedding.numpy())
            for name in self.vocab:
                probs[name].append(out.logits[name].softmax(-1).numpy())
        stacked = {name: np.concatenate(p) for name, p in probs.items()}
        labels = {name: [self.vocab[name][i] for i in p.argmax(1)] for name, p in stacked.items()}
        return JudgeReading(labels, stacked, np.concatenate(embeddings).astype(np.float64))

    @torch.no_grad()
    def masks(self, clips: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """Main-object probability per pixel of every frame, (T, H, W) at each clip's own size."""
        size = self.judge.config.size
        out = []
        for clip in clips:
            clip = np.asarray(clip)
            video = prepare_clips([clip], len(clip), size)
            logits = self.judge.segment(video)[0]
            full = F.interpolate(
                logits[:, None], size=clip.shape[1:3], mode="bilinear", align_corners=False
            )
            out.append(torch.sigmoid(full[:, 0]).numpy())
        return out
