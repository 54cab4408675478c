"""`RayExecutor`: each `map` starts its own Ray actors and kills them when it ends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from story.flows.executors.dispatch import dispatch
from story.flows.executors.ray_session import ensure_ray, resources, spec_options
from story.flows.executors.warm_workers import current_pool
from story.tasks.settings import Settings
from story.tasks.workers import ItemT, Outcome, ResultT, WorkerSpec


class RayExecutor:
    """Up to `workers` actors of `cpus_per_worker` CPUs each, made for one fan-out.

    With `settings`, Ray is joined (or started) as they say, only once a fan-out has items.
    """

    def __init__(
        self, workers: int = 2, cpus_per_worker: float = 1.0, settings: Settings | None = None
    ) -> None:
        self._workers = max(1, workers)
        self.cpus_per_worker = cpus_per_worker
        self.settings = settings

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def threads_per_worker(self) -> int:
        return max(1, int(self.cpus_per_worker))

    def map(
        self, spec: WorkerSpec[ItemT, ResultT], items: Iterable[ItemT]
    ) -> Iterator[Outcome[ItemT, ResultT]]:
        import ray

        pending = list(items)
        if not pending:
            return
        if self.settings is not None:
            ensure_ray(self.settings)
        count = min(self._workers, len(pending))
        options = spec_options(spec, self.cpus_per_worker)
        pool = current_pool()
        if pool is not None:
            pool.make_room(resources(options), count, keep="")
        remote = ray.remote(spec.worker).options(**options)
        actors = [remote.remote(**spec.kwargs) for _ in range(count)]
        try:
            yield from dispatch(actors, _submit, pending, dead=[])
        finally:
            for actor in actors:
                ray.kill(actor)


def _submit(actor: Any, item: Any) -> Any:
    return actor.process.remote(item)
