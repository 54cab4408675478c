"""The renders a synthesis evaluation scores: one file per (case, condition, seed), on N processes.

A full run (200 plots x 3 sampling seeds x 2 conditions) is 1200 renders, hours of CPU: each
render is cached as its own file, named by everything that determines it (model id, prompt,
guide, sampling seed, steps, guidance, knobs), so an interrupted run resumes at the render it
stopped at, and `workers` > 1 renders on that many processes (one model each, `threads` torch
threads each) with the same result as one process: every render has its own seeded generator.
A render whose knobs differ from a stored render's only by passes on the finished frames
(`POST_KNOBS`: `deflicker`, a function of the frames alone) is derived from that render's file
rather than rendered again: the same frames `synthesize` would deliver, in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.atomic import atomic_path
from story.tasks.hashing import frames_sha256, sha256_json

_WORKER_MODEL: Any = None
POST_KNOBS = ("deflicker",)
"""Knobs that act on the finished uint8 frames alone (`synthesize` applies them last)."""
OFF_WHEN_UNNAMED = {"cross_frame": 0.0, "still_hold": 0.0, "pixel_hold": 0.0, "deflicker": 0.0}
"""Knobs added after renders were cached: a render names them only when set, so a job without
one renders with it off, whatever the product's default is now (still_hold's is 1, deflicker's
0.3), as the renders cached under that name were."""


@dataclass(frozen=True)
class RenderJob:
    """One render of one case: what `synthesize` is called with, and where the frames go."""

    path: Path
    prompt: str
    guide: np.ndarray | None = field(compare=False, repr=False)
    frames: int
    seed: int
    steps: int
    guidance: float
    knobs: dict[str, float] = field(compare=False)
    guide_frames: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The clip the guide was estimated from (what `still_hold` reads); not in the file name:
    the case fixes it, as it fixes the guide."""
    base: Path | None = field(default=None, compare=False)
    """The file of the same render without its `POST_KNOBS` (None: it sets none), which this
    render is derived from when it exists."""


def render_job(
    folder: Path,
    model_id: str,
    prompt: str,
    guide: np.ndarray | None,
    frames: int,
    seed: int,
    steps: int,
    guidance: float,
    knobs: dict[str, float],
    guide_frames: np.ndarray | None = None,
) -> RenderJob:
    """The job for one render; its file name is the hash of everything that determines it."""
    identity = {
        "model": model_id,
        "prompt": prompt,
        "guide": frames_sha256(guide) if guide is not None else None,
        "frames": frames,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "sampling": knobs,
    }
    key = sha256_json(identity)[:20]
    base = None
    if any(knobs.get(k) for k in POST_KNOBS):
        plain = {k: v for k, v in knobs.items() if k not in POST_KNOBS}
        base = folder / f"{sha256_json({**identity, 'sampling': plain})[:20]}.npy"
    return RenderJob(
        folder / f"{key}.npy",
        prompt,
        guide,
        frames,
        seed,
        steps,
        guidance,
        knobs,
        guide_frames,
        base,
    )


def derive_job(job: RenderJob) -> None:
    """Write a job's frames from its base render's file (`RenderJob.base`), applying its
    `POST_KNOBS` as `synthesize` does, atomically."""
    from story.models.deflicker import deflicker

    if job.base is None:
        raise ValueError(f"{job.path.name}: sets no pass on finished frames to derive")
    frames = deflicker(np.load(job.base), float(job.knobs.get("deflicker", 0.0)))
    with atomic_path(job.path, durable=False) as partial, partial.open("wb") as handle:
        np.save(handle, frames)


def run_job(model: Any, job: RenderJob) -> None:
    """Render one job and write its frames atomically (a killed render leaves no file)."""
    from story.tasks.render.synthesize import synthesize

    frames = synthesize(
        model,
        job.prompt,
        job.guide,
        frames=job.frames,
        seed=job.seed,
        steps=job.steps,
        guidance=job.guidance,
        guide_frames=job.guide_frames,
        **{**OFF_WHEN_UNNAMED, **job.knobs},
    )
    job.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(job.path, durable=False) as partial, partial.open("wb") as handle:
        np.save(handle, frames)


def _start_worker(checkpoint: str, threads: int) -> None:
    global _WORKER_MODEL
    import torch

    from story.tasks.render.synthesize import load_t2v

    torch.set_num_threads(threads)
    _WORKER_MODEL = load_t2v(checkpoint, device="cpu")


def _worker_job(job: RenderJob) -> None:
    run_job(_WORKER_MODEL, job)


def ensure_renders(
    model: Any,
    checkpoint: Path,
    jobs: Iterable[RenderJob],
    *,
    workers: int = 1,
    threads: int = 1,
    log: Callable[[str], None] = print,
    label: str = "renders",
) -> int:
    """Render every job whose file is missing; returns how many were rendered now.

    `model` renders in this process when `workers` is 1; otherwise `workers` processes each load
    `checkpoint` once. Either way torch renders on `threads` threads (this process's count is
    restored after), so the frames do not depend on the worker count: a float sum split over
    another number of threads can round a pixel one level apart. The first failing render stops
    the run (finished files stay). A job whose base render is on disk is derived from it
    (`derive_job`) and not counted as rendered.
    """
    missing = list(dict.fromkeys(j for j in jobs if not j.path.is_file()))
    derived = [j for j in missing if j.base is not None and j.base.is_file()]
    for job in derived:
        derive_job(job)
    if derived:
        log(f"{label}: {len(derived)} derived from their stored renders")
    missing = [j for j in missing if not j.path.is_file()]
    if not missing:
        return 0
    tick, done = time.monotonic(), 0
    every = max(1, len(missing) // 10)

    def progress() -> None:
        if done % every == 0 or done == len(missing):
            log(f"{label}: {done}/{len(missing)} rendered ({time.monotonic() - tick:.0f}s)")

    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for job in missing:
                run_job(model, job)
                done += 1
                progress()
        finally:
            torch.set_num_threads(before)
        return done
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(missing)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(str(checkpoint), threads),
    ) as pool:
        futures = [pool.submit(_worker_job, job) for job in missing]
        try:
            for future in as_completed(futures):
                future.result()
                done += 1
                progress()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def load_renders(jobs: list[RenderJob]) -> np.ndarray:
    """(N, T, H, W, 3) frames of rendered jobs, in job order."""
    return np.stack([np.load(job.path) for job in jobs])
