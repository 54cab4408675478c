"""Render one plot (or one candidate of it): structure from the store, then synthesis.

`PlotRenderer` is a plain worker (`story.tasks.workers`): its constructor loads the synthesis
model once, `process` renders a `PlotJob`. Finished shots are cached under the workspace by a
key of everything that determines their frames, so re-rendering an unchanged story reuses them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from story.models.device import set_torch_threads
from story.models.long_shot import ReuseDiffuse
from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS
from story.tasks.hashing import sha256_json
from story.tasks.library.media import read_frames, source_hash
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.jobs import PlotJob, PlotResult, RenderError
from story.tasks.render.shot_cache import ShotCache
from story.tasks.settings import Settings
from story.tasks.structure.depth_store import DepthStore, get_or_compute_depth, make_key

# Sampling parameters a job may set (others take `synthesize`'s defaults), each with the type of
# its pipeline default, to restore what JSON gives back.
SAMPLING_KINDS: dict[str, type] = {key: type(value) for key, value in SAMPLING_DEFAULTS.items()}


def check_clip_source(job: PlotJob) -> None:
    """Refuse a clip whose file no longer holds the bytes the library recorded (and a render
    pinned): a library file rebuilt under the same path would otherwise only show up as
    different frames, with no word on why."""
    uri, recorded = job.clip["uri"], job.clip.get("source_hash")
    if recorded and source_hash(uri) != recorded:
        raise RenderError(
            f"plot {job.index}: clip {job.clip.get('clip_id')} at {uri} changed since it was "
            f"indexed (recorded sha256 {recorded[:16]}..., the file now differs): restore it "
            "(dvc checkout) or re-index the library"
        )


class PlotRenderer:
    """Loads the synthesis model (and structure estimators on demand) once; renders plots."""

    def __init__(
        self, settings: Settings, checkpoint: str | None = None, use_cache: bool = True
    ) -> None:
        from story.tasks.render.synthesize import load_t2v

        self.settings = settings
        self.use_cache = use_cache
        set_torch_threads(settings.torch_threads)
        checkpoint = checkpoint or settings.checkpoint
        folder = resolve_checkpoint(checkpoint, settings.checkpoints)
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256(folder, settings.workspace)
        self.model = load_t2v(folder, device=settings.device)
        self.store = DepthStore.from_settings(settings)
        self.shots = ShotCache(Path(settings.workspace) / "shots")
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
                # Packs by content: a retrained pack at the same path is a new shot, and a
                # clone elsewhere finds the same key.
                "concepts": {
                    name: checkpoint_sha256(folder, self.settings.workspace)
                    for name, folder in sorted(job.concepts.items())
                },
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
        if not self.use_cache:
            check_clip_source(job)
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
            generated = self.synthesize(job, structure, retrieved)
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

    def synthesize(
        self, job: PlotJob, structure: np.ndarray, retrieved: np.ndarray | None = None
    ) -> np.ndarray:
        """One clip, or a long shot continued clip by clip with Reuse-and-Diffuse; `retrieved`
        (the clip the structure came from) is what `still_hold` reads."""
        from story.tasks.render.synthesize import synthesize

        # A job planned before a knob's default changed did not record it: its former value.
        p = {**FORMER_DEFAULTS, **job.params}
        common = {
            "seed": job.seed,
            **{k: kind(p[k]) for k, kind in SAMPLING_KINDS.items() if k in p},
        }
        if job.concepts:
            from story.tasks.concepts.runtime import load_concepts

            load_concepts(self.model, job.concepts)
        continuation = ReuseDiffuse(
            prompt_frames=int(p.get("prompt_frames", ReuseDiffuse.prompt_frames)),
            alpha=float(p.get("alpha", ReuseDiffuse.alpha)),
            beta=float(p.get("beta", ReuseDiffuse.beta)),
            carry_warp=bool(p.get("carry_warp", ReuseDiffuse.carry_warp)),
            hold_prompt=bool(p.get("hold_prompt", ReuseDiffuse.hold_prompt)),
            long_hold=bool(p.get("long_hold", ReuseDiffuse.long_hold)),
        )
        return synthesize(
            self.model,
            job.prompt,
            structure,
            continuation=continuation,
            guide_frames=retrieved,
            **common,
        )
