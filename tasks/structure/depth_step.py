"""One step of precomputing structure: decode a clip's frames, estimate, store under its key.

`DepthWorker` is a plain worker: its constructor loads the estimator once, `process` handles one
clip and `process_batch` a list of clips with decoding and writing on background threads, so the
model never waits for the disk or the decoder. It runs in-process or on a Ray actor unchanged.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from story.tasks.library.media import read_frames
from story.tasks.structure.depth_store import DepthStore, make_key
from story.tasks.structure.maps import load_structure_estimator

PREFETCH = 2


@dataclass(frozen=True)
class DepthJob:
    """One clip to process: where its frames are and the store key they go to."""

    clip_id: str
    uri: str
    frame_indices: tuple[int, ...]


@dataclass
class DepthResult:
    """What happened to one clip; `status` is computed, cached or failed (with a reason)."""

    clip_id: str
    key: str
    status: str
    reason: str | None = None
    detail: str | None = None
    frames: int = 0
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed clip: the error's own label (e.g. "truncated") or its type."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__


def failure_detail(exc: BaseException) -> str:
    """The error's full message, first line only."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _timed_read(uri: str, indices: tuple[int, ...]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    frames = read_frames(uri, list(indices))
    return frames, time.perf_counter() - t0


class DepthWorker:
    """Loads one structure estimator and writes its maps into the store under the workspace."""

    def __init__(
        self,
        settings: dict[str, Any],
        model: str = "tiny",
        size: tuple[int, int] | None = (64, 64),
        normalize: str = "frame",
        store_root: str | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        from story.tasks.settings import Settings

        if threads:
            torch.set_num_threads(threads)
        self.settings = Settings(**settings)
        self.estimator = load_structure_estimator(
            model, self.settings.checkpoints, self.settings.device
        )
        self.model_id = self.estimator.model_id
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.normalize = normalize
        self.store = (
            DepthStore(store_root) if store_root else DepthStore.from_settings(self.settings)
        )

    def key(self, job: DepthJob) -> str:
        return make_key(
            job.clip_id, self.model_id, job.frame_indices, self.size, self.normalize
        ).digest

    def _store(self, job: DepthJob, array: np.ndarray) -> float:
        t0 = time.perf_counter()
        key = make_key(job.clip_id, self.model_id, job.frame_indices, self.size, self.normalize)
        self.store.put(key, array, {"uri": job.uri})
        return time.perf_counter() - t0

    def process(self, job: DepthJob) -> DepthResult:
        """Compute and store one clip's map (or report it cached); decoding errors raise."""
        key = self.key(job)
        if self.store.has(key):
            return DepthResult(job.clip_id, key, "cached")
        frames, read_s = _timed_read(job.uri, job.frame_indices)
        t0 = time.perf_counter()
        array = self.estimator.estimate(frames, size=self.size, normalize=self.normalize)
        compute_s = time.perf_counter() - t0
        write_s = self._store(job, array)
        return DepthResult(
            job.clip_id,
            key,
            "computed",
            frames=len(frames),
            read_s=read_s,
            compute_s=compute_s,
            write_s=write_s,
        )

    def process_batch(self, jobs: list[DepthJob]) -> list[DepthResult]:
        """Process clips in order; the next clips decode and the last one writes meanwhile.

        A clip that fails (e.g. cannot be decoded) is reported as failed; the rest complete.
        """
        results: dict[int, DepthResult] = {}
        todo: list[tuple[int, DepthJob, str]] = []
        for i, job in enumerate(jobs):
            key = self.key(job)
            if self.store.has(key):
                results[i] = DepthResult(job.clip_id, key, "cached")
            else:
                todo.append((i, job, key))
        writes: list[tuple[int, DepthResult, Future[float]]] = []
        with (
            ThreadPoolExecutor(1, thread_name_prefix="depth-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="depth-write") as writer,
        ):
            reads: deque[tuple[int, DepthJob, str, Future]] = deque()
            pending = iter(todo)

            def refill() -> None:
                while len(reads) < PREFETCH and (nxt := next(pending, None)) is not None:
                    i, job, key = nxt
                    reads.append(
                        (i, job, key, reader.submit(_timed_read, job.uri, job.frame_indices))
                    )

            refill()
            while reads:
                i, job, key, future = reads.popleft()
                refill()
                try:
                    frames, read_s = future.result()
                    t0 = time.perf_counter()
                    array = self.estimator.estimate(
                        frames, size=self.size, normalize=self.normalize
                    )
                    compute_s = time.perf_counter() - t0
                except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the batch
                    results[i] = DepthResult(
                        job.clip_id, key, "failed", failure_reason(exc), failure_detail(exc)
                    )
                    continue
                result = DepthResult(
                    job.clip_id,
                    key,
                    "computed",
                    frames=len(frames),
                    read_s=read_s,
                    compute_s=compute_s,
                )
                writes.append((i, result, writer.submit(self._store, job, array)))
            for i, result, future in writes:
                try:
                    result.write_s = future.result()
                except Exception as exc:  # noqa: BLE001 - a failed write fails only its clip
                    result.status, result.reason = "failed", failure_reason(exc)
                    result.detail = failure_detail(exc)
                results[i] = result
        return [results[i] for i in range(len(jobs))]
