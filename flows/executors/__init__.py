"""Executors: the same worker specs in-process, on fresh Ray actors, or on warm Ray actors.

Flows pick one executor per run with `executor_for` and hand it to the steps; steps only call
`executor.map(spec, items)` (`story.tasks.workers`). Ray is imported when an executor needs it.
"""

from __future__ import annotations

from story.flows.executors.ray_actors import RayExecutor
from story.flows.executors.warm_workers import WarmExecutor
from story.tasks.settings import Settings
from story.tasks.workers import Executor, LocalExecutor

__all__ = ["LocalExecutor", "RayExecutor", "WarmExecutor", "executor_for"]


def executor_for(
    settings: Settings, use_ray: bool, warm: bool = False, workers: int | None = None
) -> Executor:
    """In-process without Ray; on Ray, `workers` actors (default `ray_workers`), kept warm
    between runs when `warm` and the settings allow it (`worker_idle_s` > 0). Ray is joined
    only when a fan-out has items."""
    if not use_ray:
        return LocalExecutor()
    count = workers or settings.ray_workers
    if warm and settings.worker_idle_s > 0:
        return WarmExecutor(workers=count, settings=settings)
    return RayExecutor(count, settings=settings)
