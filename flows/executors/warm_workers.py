"""This process's warm pool, `WarmExecutor` on it, and the cluster's warm workers for the CLI."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from story.flows.executors.dispatch import dispatch
from story.flows.executors.ray_session import ensure_ray, session, spec_options
from story.flows.executors.warm_pool import WarmActor, WarmPool
from story.tasks.settings import Settings
from story.tasks.workers import ItemT, Outcome, ResultT, WorkerSpec

WORKER_NAMESPACE = "story"

_pool: WarmPool | None = None
_pool_lock = threading.Lock()


def warm_pool(settings: Settings) -> WarmPool | None:
    """This process's warm pool for the connected Ray (None when `worker_idle_s` is 0).

    With a cluster address its actors are named in the `story` namespace and outlive the process.
    """
    global _pool
    if settings.worker_idle_s <= 0:
        return None
    ensure_ray(settings)
    namespace = WORKER_NAMESPACE if settings.ray_address else None
    with _pool_lock:
        stale = _pool is not None and _pool.session != session()
        wanted = (namespace, settings.worker_idle_s)
        if _pool is None or stale or (_pool.namespace, _pool.idle_s) != wanted:
            if _pool is not None and not stale and not _pool.named:
                _pool.shutdown()
            if _pool is None:
                atexit.register(_stop_local_pool)
            _pool = WarmPool(*wanted)
        return _pool


def current_pool() -> WarmPool | None:
    """This process's warm pool if it belongs to the running Ray session, else None."""
    if _pool is not None and _pool.session == session():
        return _pool
    return None


def _stop_local_pool() -> None:
    """At exit: this process's own warm actors go (named ones stay for the next process)."""
    import ray

    if ray.is_initialized() and (pool := current_pool()) is not None and not pool.named:
        pool.shutdown()


class WarmExecutor:
    """Up to `workers` actors from a warm pool: models stay loaded for the next fan-out.

    The pool is `pool`, or this process's (`warm_pool(settings)`) once a fan-out has items.
    """

    def __init__(
        self,
        pool: WarmPool | None = None,
        workers: int = 2,
        cpus_per_worker: float = 1.0,
        settings: Settings | None = None,
    ) -> None:
        if pool is None and settings is None:
            raise ValueError("WarmExecutor needs a pool or the settings to find this process's")
        self._pool = pool
        self.settings = settings
        self._workers = max(1, workers)
        self.cpus_per_worker = cpus_per_worker

    @property
    def pool(self) -> WarmPool:
        if self._pool is None:
            assert self.settings is not None
            pool = warm_pool(self.settings)
            if pool is None:
                raise ValueError("warm workers are off (worker_idle_s = 0): use RayExecutor")
            self._pool = pool
        return self._pool

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def threads_per_worker(self) -> int:
        return max(1, int(self.cpus_per_worker))

    def map(
        self, spec: WorkerSpec[ItemT, ResultT], items: Iterable[ItemT]
    ) -> Iterator[Outcome[ItemT, ResultT]]:
        pending = list(items)
        if not pending:
            return
        count = min(self._workers, len(pending))
        pool = self.pool
        actors = pool.acquire(spec, count, spec_options(spec, self.cpus_per_worker))
        dead: list[WarmActor] = []
        try:
            yield from dispatch(actors, _submit, pending, dead)
        finally:
            pool.release(a for a in actors if not any(a is d for d in dead))


def _submit(actor: WarmActor, item: Any) -> Any:
    return actor.handle.process.remote(item)


def cluster_workers(settings: Settings, stop: bool = False) -> dict[str, Any]:
    """The warm workers on the configured cluster (stopped first when `stop`).

    Without a cluster address warm workers live inside each process and end with it, so there
    is nothing to list or stop from outside.
    """
    if not settings.ray_address:
        return {
            "address": None,
            "workers": [],
            "stopped": [],
            "note": "no ray_address (STORY_RAY_ADDRESS): warm workers end with their process",
        }
    ensure_ray(settings)
    pool = WarmPool(WORKER_NAMESPACE, settings.worker_idle_s)
    stopped = pool.shutdown() if stop else []
    return {
        "address": settings.ray_address,
        "namespace": WORKER_NAMESPACE,
        "idle_timeout_s": settings.worker_idle_s,
        "workers": pool.describe(),
        "stopped": stopped,
    }
