"""Render one plot (or one candidate of it): structure from the store, then synthesis.

`PlotRenderer` is a plain worker: its constructor loads the synthesis model once, `process`
renders a `PlotJob`. Finished shots are cached under the workspace by a key of everything that
determines their frames, so re-rendering an unchanged story reuses them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from story.models.device import set_torch_threads
from story.models.long_shot import ReuseDiffuse
from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json, sha256_tree
from story.tasks.library.media import read_frames
from story.tasks.provenance.hash_cache import hash_cache
from story.tasks.settings import Settings
from story.tasks.structure.depth_store import DepthStore, get_or_compute_depth, make_key

T2V_PRESETS = {"tiny": "t2v-tiny"}


class RenderError(StoryError):
    """A plot cannot be rendered as asked (unknown checkpoint, unsupported structure, ...)."""


def resolve_checkpoint(name: str, checkpoints: str | Path) -> Path:
    """A checkpoint name -> its folder under the checkpoints root (presets map `tiny`)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise RenderError(f"checkpoint {name!r}: give a name of a folder in {checkpoints}")
    folder = Path(checkpoints) / T2V_PRESETS.get(name, name)
    if not (folder / "model_index.json").is_file():
        raise RenderError(f"checkpoint {name!r}: no model at {folder} (model_index.json missing)")
    return folder


def checkpoint_config(folder: str | Path) -> dict[str, Any]:
    """A synthesis checkpoint's geometry and settings (its model_index.json), without weights."""
    return json.loads((Path(folder) / "model_index.json").read_text())


def checkpoint_sha256(folder: str | Path, workspace: str | Path | None = None) -> str:
    """Content hash of a checkpoint folder: what manifests pin and caches key on.

    With a workspace, files whose stat is unchanged since they were last hashed are not re-read.
    """
    if workspace is None:
        return sha256_tree(folder)
    return hash_cache(workspace).tree(folder)


@dataclass(frozen=True)
class PlotJob:
    """What one rendered shot depends on, apart from the model weights."""

    index: int
    candidate: int
    prompt: str
    clip: dict[str, Any]
    frame_indices: tuple[int, ...]
    seed: int
    structure: str = "depth"
    params: dict[str, Any] = field(default_factory=dict)
    concepts: dict[str, str] = field(default_factory=dict)


@dataclass
class PlotResult:
    """The rendered shot and what the storyboard and the manifest need about it."""

    index: int
    candidate: int
    generated: np.ndarray
    retrieved: np.ndarray
    structure: np.ndarray
    structure_key: str
    shot_key: str
    cached: bool
    timings: dict[str, float]


class ShotCache:
    """Rendered shots on disk, addressed by the hash of everything that determines them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, frames: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp")
        with tmp.open("wb") as handle:
            np.save(handle, frames, allow_pickle=False)
        tmp.replace(path)


class PlotRenderer:
    """Loads the synthesis model (and structure estimators on demand) once; renders plots."""

    def __init__(
        self, settings: dict[str, Any], checkpoint: str = "tiny", use_cache: bool = True
    ) -> None:
        from story.tasks.render.synthesize import load_t2v

        self.settings = Settings(**settings)
        self.use_cache = use_cache
        set_torch_threads(self.settings.torch_threads)
        folder = resolve_checkpoint(checkpoint, self.settings.checkpoints)
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256(folder, self.settings.workspace)
        self.model = load_t2v(folder, device=self.settings.device)
        self.store = DepthStore.from_settings(self.settings)
        self.shots = ShotCache(Path(self.settings.workspace) / "shots")
        self._estimators: dict[str, Any] = {}

    def estimator(self, kind: str) -> Any:
        """The structure estimator for a plot's structure type, loaded once."""
        from story.tasks.structure.maps import load_structure_estimator

        if kind not in self._estimators:
            spec = self.settings.depth_model if kind == "depth" else kind
            self._estimators[kind] = load_structure_estimator(
                spec, self.settings.checkpoints, device=self.settings.device
            )
        return self._estimators[kind]

    def shot_key(self, job: PlotJob, structure_key: str) -> str:
        return sha256_json(
            {
                "checkpoint": self.checkpoint_sha256,
                "structure": structure_key,
                "prompt": job.prompt,
                "seed": job.seed,
                "params": job.params,
                "concepts": job.concepts,
            }
        )[:32]

    def process(self, job: PlotJob) -> PlotResult:
        """Structure (stored once per clip and model) -> synthesis (cached per shot)."""
        cfg = self.model.config
        if job.structure != "depth" and cfg.structure_channels != 1:
            raise RenderError(f"plot {job.index}: structure {job.structure!r} is not supported")
        estimator = self.estimator(job.structure)
        size = (cfg.height, cfg.width)
        clip = {**job.clip, "frame_indices": list(job.frame_indices)}
        t0 = time.perf_counter()
        key = make_key(clip["clip_id"], estimator.model_id, job.frame_indices, size).digest
        retrieved = read_frames(clip["uri"], job.frame_indices)
        if self.use_cache:
            structure = get_or_compute_depth(
                self.store, estimator, clip, size=size, frames=retrieved
            )
        else:
            # Quantised exactly as the store keeps it, so a fresh run matches a cached one.
            fresh = estimator.estimate(retrieved, size=size)
            structure = fresh.astype(np.float16).astype(np.float32)
        structure_s = time.perf_counter() - t0

        shot_key = self.shot_key(job, key)
        t0 = time.perf_counter()
        generated = self.shots.get(shot_key) if self.use_cache else None
        cached = generated is not None
        if generated is None:
            generated = self.synthesize(job, structure)
            self.shots.put(shot_key, generated)
        return PlotResult(
            index=job.index,
            candidate=job.candidate,
            generated=generated,
            retrieved=retrieved,
            structure=structure,
            structure_key=key,
            shot_key=shot_key,
            cached=cached,
            timings={"structure_s": structure_s, "synthesis_s": time.perf_counter() - t0},
        )

    def synthesize(self, job: PlotJob, structure: np.ndarray) -> np.ndarray:
        """One clip, or a long shot continued clip by clip with Reuse-and-Diffuse."""
        from story.tasks.render.synthesize import synthesize

        p = job.params
        common = {
            "seed": job.seed,
            "steps": int(p.get("steps", 25)),
            "guidance": float(p.get("guidance", 4.0)),
            "tau": int(p.get("tau", 0)),
            "strength": float(p.get("strength", 1.0)),
        }
        if job.concepts:
            from story.tasks.concepts.concepts import load_concepts

            load_concepts(self.model, job.concepts)
        continuation = ReuseDiffuse(
            prompt_frames=int(p.get("prompt_frames", ReuseDiffuse.prompt_frames)),
            alpha=float(p.get("alpha", ReuseDiffuse.alpha)),
            beta=float(p.get("beta", ReuseDiffuse.beta)),
        )
        return synthesize(self.model, job.prompt, structure, continuation=continuation, **common)
