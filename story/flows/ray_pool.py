"""Fan-out of plain steps: in-process or on Ray actors, chosen by the executor, not the step.

A worker class is any plain class from `story.tasks` whose constructor loads its models once and
whose method processes one item. `run_on_actors` wraps it in Ray actors; `run_local` calls it
in-process. Both yield `(item, result, error)` in completion order so callers can write each
result as soon as it exists (a killed job loses at most the items in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from story.settings import Settings

log = logging.getLogger(__name__)

Outcome = tuple[Any, Any, BaseException | None]


def ensure_ray(settings: Settings) -> None:
    """Connect to the configured cluster, or start one local Ray (once per process)."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
        "configure_logging": False,
    }
    if settings.ray_address:
        ray.init(address=settings.ray_address, **kwargs)
    else:
        ray.init(num_cpus=max(settings.ray_workers, 1), **kwargs)


def cluster_gpus() -> float:
    """GPUs the connected cluster offers (0 on a CPU-only cluster)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def actor_options(num_cpus: float = 1.0, want_gpu: bool = True) -> dict[str, Any]:
    """Actor resources: one GPU each only where the cluster has GPUs; restart on crash."""
    options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": 2, "max_task_retries": 0}
    if want_gpu and cluster_gpus() >= 1:
        options["num_gpus"] = 1
    return options


def run_local(
    worker_cls: type, init_kwargs: dict[str, Any], items: Iterable[Any], method: str
) -> Iterator[Outcome]:
    """Run every item through one in-process worker; errors are returned, not raised."""
    worker = worker_cls(**init_kwargs)
    fn = getattr(worker, method)
    for item in items:
        try:
            yield item, fn(item), None
        except Exception as exc:  # noqa: BLE001 - the caller decides what a failure means
            yield item, None, exc


def run_on_actors(
    worker_cls: type,
    init_kwargs: dict[str, Any],
    items: Iterable[Any],
    method: str,
    workers: int = 2,
    num_cpus: float = 1.0,
    max_item_retries: int = 2,
) -> Iterator[Outcome]:
    """Run items on a pool of Ray actors; an item whose actor died is retried on a live one."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    pending = list(items)
    if not pending:
        return
    remote_cls = ray.remote(worker_cls).options(**actor_options(num_cpus=num_cpus))
    actors = [remote_cls.remote(**init_kwargs) for _ in range(min(workers, len(pending)))]
    idle = list(actors)
    attempts: dict[int, int] = {}
    in_flight: dict[Any, tuple[int, Any, Any]] = {}
    queue = list(enumerate(pending))
    try:
        while queue or in_flight:
            while queue and idle:
                index, item = queue.pop(0)
                actor = idle.pop(0)
                ref = getattr(actor, method).remote(item)
                in_flight[ref] = (index, item, actor)
            done, _ = ray.wait(list(in_flight), num_returns=1)
            ref = done[0]
            index, item, actor = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except RayTaskError as exc:
                idle.append(actor)
                yield item, None, exc.as_instanceof_cause()
                continue
            except (RayActorError, WorkerCrashedError) as exc:
                attempts[index] = attempts.get(index, 0) + 1
                log.warning("worker died on item %s (attempt %s): %s", index, attempts[index], exc)
                idle.append(actor)  # restarted by Ray (max_restarts)
                if attempts[index] <= max_item_retries:
                    queue.insert(0, (index, item))
                else:
                    yield item, None, exc
                continue
            idle.append(actor)
            yield item, result, None
    finally:
        for actor in actors:
            ray.kill(actor)
