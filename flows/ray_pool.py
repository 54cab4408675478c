"""Fan-out of plain steps: in-process or on Ray actors, chosen by the executor, not the step.

A worker class is any plain class from `story.tasks` whose constructor loads its models once and
whose method processes one item. `run_on_actors` wraps it in Ray actors; `run_local` calls it
in-process. Both yield `(item, result, error)` in completion order so callers can write each
result as soon as it exists (a killed job loses at most the items in flight).

Warm workers: given a `WarmPool`, actors outlive the fan-out and serve the next one that asks for
the same worker class, init kwargs, identity (e.g. the checkpoint's sha256) and resources, so
models load once rather than once per flow run. Connected to a cluster by address
(`STORY_RAY_ADDRESS`), warm actors are named and detached in the `story` namespace, so successive
`story render` processes reuse them; otherwise they belong to this process and end with it (or
with `ray.shutdown`). A warm actor exits by itself after `worker_idle_s` idle seconds, freeing its
CPU / GPU; `story workers stop` frees them at once. A dead warm actor is replaced when found.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from story.tasks.hashing import sha256_json
from story.tasks.settings import Settings

log = logging.getLogger(__name__)

Outcome = tuple[Any, Any, BaseException | None]

WORKER_NAMESPACE = "story"
IDLE_POLL_S = 5.0
EVICT_GRACE_S = 5.0
RESTART_WAIT_S = 120.0


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


def _resources(options: dict[str, Any]) -> dict[str, float]:
    return {"CPU": float(options.get("num_cpus", 1.0)), "GPU": float(options.get("num_gpus", 0))}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def pool_key(
    worker_cls: type, init_kwargs: dict[str, Any], options: dict[str, Any], identity: Any = None
) -> str:
    """Which warm actors can serve a fan-out: same class, init kwargs, identity and resources."""
    return sha256_json(
        {
            "worker": _class_name(worker_cls),
            "init": init_kwargs,
            "identity": identity,
            "resources": _resources(options),
        }
    )[:20]


@functools.cache
def _host_class() -> Any:
    """The Ray actor class of warm workers (built on first use, so importing needs no Ray)."""
    import ray

    class WorkerHost:
        """One worker built once, its method calls, and how long it has been idle."""

        def __init__(
            self, worker_cls: type, init_kwargs: dict[str, Any], info: dict[str, Any], idle_s: float
        ) -> None:
            self.worker = worker_cls(**init_kwargs)
            self.info = {**info, "pid": os.getpid()}
            self.busy = 0
            self.last_used = time.monotonic()
            if idle_s > 0:
                me = ray.get_runtime_context().current_actor
                reaper = threading.Thread(target=self._exit_when_idle, args=(me, idle_s))
                reaper.daemon = True
                reaper.start()

        def call(self, method: str, item: Any) -> Any:
            self.busy += 1
            try:
                return getattr(self.worker, method)(item)
            finally:
                self.busy -= 1
                self.last_used = time.monotonic()

        @ray.method(concurrency_group="control")
        def status(self) -> dict[str, Any]:
            """Answered even while a call runs: worker, key, resources, pid, busy, idle seconds."""
            idle = 0.0 if self.busy else time.monotonic() - self.last_used
            return {**self.info, "busy": bool(self.busy), "idle_s": round(idle, 3)}

        def _exit_when_idle(self, me: Any, idle_s: float) -> None:
            while True:
                time.sleep(min(idle_s, IDLE_POLL_S))
                if not self.busy and time.monotonic() - self.last_used >= idle_s:
                    # Queued behind any call already sent, so no accepted item is dropped.
                    me.__ray_terminate__.remote()
                    return

    return ray.remote(concurrency_groups={"control": 1})(WorkerHost)


@dataclass
class WarmActor:
    """A handle in the pool and what it needs to be found, replaced or evicted."""

    handle: Any
    worker: str
    key: str
    resources: dict[str, float]
    name: str | None = None
    last_used: float = field(default_factory=time.monotonic)


def _session() -> tuple[str, str]:
    import ray

    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


def ask(call: Callable[[], Any], wait_s: float = RESTART_WAIT_S) -> Any:
    """`ray.get` of an actor call, waiting out a restart (a restarting actor refuses calls)."""
    import ray
    from ray.exceptions import ActorUnavailableError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get(call(), timeout=wait_s)
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _alive(handle: Any) -> bool:
    """True once the actor answers (after a restart); False when it is dead for good."""
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        ask(handle.__ray_ready__.remote)
    except (RayActorError, GetTimeoutError):
        return False
    return True


def _all_fit(short: dict[str, float]) -> bool:
    return all(v <= 0 for v in short.values())


class WarmPool:
    """Actors kept between fan-outs, keyed by `pool_key`; named and detached in `namespace`."""

    def __init__(self, namespace: str | None = None, idle_s: float = 600.0) -> None:
        self.namespace = namespace
        self.idle_s = idle_s
        self.session = _session()
        self._idle: dict[str, list[WarmActor]] = {}
        self._lock = threading.Lock()

    @property
    def named(self) -> bool:
        return self.namespace is not None

    def acquire(
        self,
        worker_cls: type,
        init_kwargs: dict[str, Any],
        count: int,
        options: dict[str, Any],
        identity: Any = None,
    ) -> list[WarmActor]:
        """`count` live actors for this worker: warm ones first, new ones for the rest."""
        key = pool_key(worker_cls, init_kwargs, options, identity)
        if self.named:
            return [self._named(worker_cls, init_kwargs, options, key, i) for i in range(count)]
        with self._lock:
            warm = self._idle.get(key, [])
            taken, self._idle[key] = warm[:count], warm[count:]
        actors = [a for a in taken if _alive(a.handle)]
        missing = count - len(actors)
        if missing:
            self.make_room(_resources(options), missing, keep=key)
            actors += [self._new(worker_cls, init_kwargs, options, key) for _ in range(missing)]
        return actors

    def release(self, actors: Iterable[WarmActor]) -> None:
        """Hand actors back for the next fan-out (named actors live on in the cluster anyway)."""
        if self.named:
            return
        now = time.monotonic()
        with self._lock:
            for actor in actors:
                actor.last_used = now
                self._idle.setdefault(actor.key, []).append(actor)

    def revive(
        self,
        actor: WarmActor,
        worker_cls: type,
        init_kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> WarmActor:
        """The same actor once Ray restarted it, or a fresh one when it is dead for good."""
        if _alive(actor.handle):
            return actor
        log.warning("warm worker %s is dead; starting a new one", actor.name or actor.key)
        if self.named:
            index = int(str(actor.name).rsplit("-", 1)[1])
            return self._named(worker_cls, init_kwargs, options, actor.key, index)
        self.make_room(actor.resources, 1, keep=actor.key)
        return self._new(worker_cls, init_kwargs, options, actor.key)

    def make_room(self, need: dict[str, float], count: int, keep: str) -> None:
        """Stop least recently used idle warm actors of other keys until `count` more fit."""
        import ray

        free = ray.available_resources()
        short = {r: count * n - free.get(r, 0.0) for r, n in need.items() if n}
        if _all_fit(short):
            return
        for victim in self._evictable(keep):
            log.info("stopping idle warm worker %s to make room", victim.name or victim.key)
            ray.kill(victim.handle, no_restart=True)
            short = {r: v - victim.resources.get(r, 0.0) for r, v in short.items()}
            if _all_fit(short):
                return

    def _evictable(self, keep: str) -> list[WarmActor]:
        """Idle actors of other keys, least recently used first (taken out of the pool)."""
        if self.named:
            idle = [
                (handle, s)
                for handle, s in self._statuses()
                if s["key"] != keep and not s["busy"] and s["idle_s"] >= EVICT_GRACE_S
            ]
            idle.sort(key=lambda pair: -pair[1]["idle_s"])
            return [self._from_status(handle, s) for handle, s in idle]
        with self._lock:
            victims = sorted(
                (a for k, group in self._idle.items() if k != keep for a in group),
                key=lambda a: a.last_used,
            )
            for victim in victims:
                self._idle[victim.key].remove(victim)
        return victims

    def describe(self) -> list[dict[str, Any]]:
        """Every idle warm worker (named pools: every one in the namespace, busy ones too):
        name, worker class, key, resources, pid, busy, idle seconds."""
        import ray
        from ray.exceptions import RayActorError

        if self.named:
            return [s for _, s in self._statuses()]
        with self._lock:
            actors = [a for group in self._idle.values() for a in group]
        described = []
        for actor in actors:
            try:
                status = ask(actor.handle.status.remote)
            except (RayActorError, ray.exceptions.GetTimeoutError):
                continue
            described.append({"name": actor.name, **status})
        return described

    def shutdown(self) -> list[str]:
        """Stop every warm actor of this pool (named pools: every one in the namespace)."""
        import ray

        if self.named:
            stopped = []
            for name in self._names():
                try:
                    ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
                except ValueError:
                    continue
                stopped.append(name)
            return stopped
        with self._lock:
            actors = [a for group in self._idle.values() for a in group]
            self._idle.clear()
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)
        return [a.key for a in actors]

    def _names(self) -> list[str]:
        import ray

        return sorted(
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == self.namespace
        )

    def _exists(self, name: str) -> bool:
        import ray

        try:
            ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return False
        return True

    def _statuses(self) -> list[tuple[Any, dict[str, Any]]]:
        pairs = (self._status(name) for name in self._names())
        return [pair for pair in pairs if pair is not None]

    def _status(self, name: str) -> tuple[Any, dict[str, Any]] | None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            handle = ray.get_actor(name, namespace=self.namespace)
            return handle, {"name": name, **ask(handle.status.remote)}
        except (ValueError, AttributeError, RayActorError, GetTimeoutError):
            return None

    def _from_status(self, handle: Any, status: dict[str, Any]) -> WarmActor:
        return WarmActor(
            handle, status["worker"], status["key"], status["resources"], status["name"]
        )

    def _host(
        self,
        worker_cls: type,
        init_kwargs: dict[str, Any],
        options: dict[str, Any],
        key: str,
        **naming: Any,
    ) -> Any:
        info = {"worker": _class_name(worker_cls), "key": key, "resources": _resources(options)}
        host = _host_class().options(**options, **naming)
        return host.remote(worker_cls, init_kwargs, info, self.idle_s)

    def _new(
        self, worker_cls: type, init_kwargs: dict[str, Any], options: dict[str, Any], key: str
    ) -> WarmActor:
        handle = self._host(worker_cls, init_kwargs, options, key)
        return WarmActor(handle, _class_name(worker_cls), key, _resources(options))

    def _named(
        self,
        worker_cls: type,
        init_kwargs: dict[str, Any],
        options: dict[str, Any],
        key: str,
        index: int,
    ) -> WarmActor:
        """The cluster's warm actor of this name, started here if no live one has it."""
        name = f"{worker_cls.__name__}-{key}-{index}"
        if not self._exists(name):
            self.make_room(_resources(options), 1, keep=key)
        handle = self._host(
            worker_cls,
            init_kwargs,
            options,
            key,
            name=name,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
        )
        return WarmActor(handle, _class_name(worker_cls), key, _resources(options), name)


_pool: WarmPool | None = None
_pool_lock = threading.Lock()


def warm_pool(settings: Settings) -> WarmPool | None:
    """This process's warm pool for the connected Ray (None when `worker_idle_s` is 0)."""
    global _pool
    if settings.worker_idle_s <= 0:
        return None
    ensure_ray(settings)
    namespace = WORKER_NAMESPACE if settings.ray_address else None
    with _pool_lock:
        stale = _pool is not None and _pool.session != _session()
        wanted = (namespace, settings.worker_idle_s)
        if _pool is None or stale or (_pool.namespace, _pool.idle_s) != wanted:
            if _pool is not None and not stale and not _pool.named:
                _pool.shutdown()
            if _pool is None:
                atexit.register(_stop_local_pool)
            _pool = WarmPool(*wanted)
        return _pool


def _stop_local_pool() -> None:
    """At exit: this process's own warm actors go (named ones stay for the next process)."""
    import ray

    owned = _pool is not None and not _pool.named and ray.is_initialized()
    if owned and _pool.session == _session():
        _pool.shutdown()


def _make_room_for(options: dict[str, Any], count: int) -> None:
    """Before a plain fan-out: idle warm actors of this process give way if resources are short."""
    if _pool is not None and _pool.session == _session():
        _pool.make_room(_resources(options), count, keep="")


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
    pool: WarmPool | None = None,
    identity: Any = None,
) -> Iterator[Outcome]:
    """Run items on a pool of Ray actors; an item whose actor died is retried on a live one.

    Without `pool` the actors are made for this fan-out and killed at its end; with one they
    come from it (warm when an earlier fan-out asked for the same worker) and go back to it.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    pending = list(items)
    if not pending:
        return
    count = min(workers, len(pending))
    options = actor_options(num_cpus=num_cpus)
    submit: Callable[[Any, Any], Any]
    if pool is not None:
        actors: list[Any] = pool.acquire(worker_cls, init_kwargs, count, options, identity)

        def submit(actor: WarmActor, item: Any) -> Any:
            return actor.handle.call.remote(method, item)

        def revive(actor: WarmActor) -> WarmActor:
            return pool.revive(actor, worker_cls, init_kwargs, options)

    else:
        _make_room_for(options, count)
        remote_cls = ray.remote(worker_cls).options(**options)
        actors = [remote_cls.remote(**init_kwargs) for _ in range(count)]

        def submit(actor: Any, item: Any) -> Any:
            return getattr(actor, method).remote(item)

        def revive(actor: Any) -> Any:
            if _alive(actor):
                return actor
            fresh = remote_cls.remote(**init_kwargs)
            actors.append(fresh)
            return fresh

    idle = list(actors)
    attempts: dict[int, int] = {}
    in_flight: dict[Any, tuple[int, Any, Any]] = {}
    queue = list(enumerate(pending))
    try:
        while queue or in_flight:
            while queue and idle:
                index, item = queue.pop(0)
                actor = idle.pop(0)
                in_flight[submit(actor, item)] = (index, item, actor)
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
                idle.append(revive(actor))
                if attempts[index] <= max_item_retries:
                    queue.insert(0, (index, item))
                else:
                    yield item, None, exc
                continue
            idle.append(actor)
            yield item, result, None
    finally:
        if pool is not None:
            pool.release(idle + [a for _, _, a in in_flight.values()])
        else:
            for actor in actors:
                ray.kill(actor)


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
