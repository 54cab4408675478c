"""Warm workers: Ray actors that keep their loaded models between fan-outs.

A fan-out asks the pool for actors of a worker spec; warm ones with the same pool key (worker
class, constructor arguments, identity, resources) serve it, new ones are started for the rest,
and all go back to the pool afterwards. Connected to a cluster by address, warm actors are
named and detached in a namespace, so successive `story render` processes share them;
otherwise they belong to this process and end with it. A warm actor exits by itself after
`idle_s` idle seconds, freeing its CPU / GPU. Ray restarts a crashed one (`ray_session`); one
dead for good is replaced when next acquired.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from story.flows.executors.ray_session import alive, ask, resources, session
from story.tasks.hashing import sha256_json
from story.tasks.workers import WorkerSpec

log = logging.getLogger(__name__)

IDLE_POLL_S = 5.0
EVICT_GRACE_S = 5.0
STATUS_WAIT_S = 10.0  # a status is answered at once (its own concurrency group)


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def pool_key(spec: WorkerSpec[Any, Any], options: dict[str, Any]) -> str:
    """Which warm actors can serve a fan-out: same class, kwargs, identity and resources."""
    return sha256_json(
        {
            "worker": spec.name,
            "init": {k: _plain(v) for k, v in spec.kwargs.items()},
            "identity": spec.identity,
            "resources": resources(options),
        }
    )[:20]


@functools.cache
def _host_class() -> Any:
    """The Ray actor class of warm workers (built on first use, so importing needs no Ray)."""
    import ray

    class WorkerHost:
        """One worker built once, its calls, and how long it has been idle."""

        def __init__(self, spec: WorkerSpec[Any, Any], info: dict[str, Any], idle_s: float) -> None:
            self.worker = spec.build()
            self.info = {**info, "pid": os.getpid()}
            self.busy = 0
            self.last_used = time.monotonic()
            if idle_s > 0:
                me = ray.get_runtime_context().current_actor
                reaper = threading.Thread(target=self._exit_when_idle, args=(me, idle_s))
                reaper.daemon = True
                reaper.start()

        def process(self, item: Any) -> Any:
            self.busy += 1
            try:
                return self.worker.process(item)
            finally:
                self.busy -= 1
                self.last_used = time.monotonic()

        # No retries: a status sent to a worker that has just exited by itself is not sent
        # again (each retry waited out a call to a dead actor, and `describe` hung for minutes);
        # the caller gives up after STATUS_WAIT_S.
        @ray.method(concurrency_group="control", max_task_retries=0)
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
    """A handle in the pool and what it needs to be found or evicted."""

    handle: Any
    worker: str
    key: str
    resources: dict[str, float]
    name: str | None = None
    last_used: float = field(default_factory=time.monotonic)


def _all_fit(short: dict[str, float]) -> bool:
    return all(v <= 0 for v in short.values())


class WarmPool:
    """Actors kept between fan-outs, keyed by `pool_key`; named and detached in `namespace`."""

    def __init__(self, namespace: str | None = None, idle_s: float = 600.0) -> None:
        self.namespace = namespace
        self.idle_s = idle_s
        self.session = session()
        self._idle: dict[str, list[WarmActor]] = {}
        self._lock = threading.Lock()

    @property
    def named(self) -> bool:
        return self.namespace is not None

    def acquire(
        self, spec: WorkerSpec[Any, Any], count: int, options: dict[str, Any]
    ) -> list[WarmActor]:
        """`count` live actors for this spec: warm ones first, new ones for the rest."""
        key = pool_key(spec, options)
        if self.named:
            return [self._named(spec, options, key, i) for i in range(count)]
        with self._lock:
            warm = self._idle.get(key, [])
            taken, self._idle[key] = warm[:count], warm[count:]
        actors = [a for a in taken if alive(a.handle)]
        missing = count - len(actors)
        if missing:
            self.make_room(resources(options), missing, keep=key)
            actors += [self._new(spec, options, key) for _ in range(missing)]
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
        from ray.exceptions import GetTimeoutError, RayActorError

        if self.named:
            return [s for _, s in self._statuses()]
        with self._lock:
            actors = [a for group in self._idle.values() for a in group]
        described = []
        for actor in actors:
            try:
                status = ask(actor.handle.status.remote, wait_s=STATUS_WAIT_S)
            except (RayActorError, GetTimeoutError):
                # Not described, but kept: an actor only slow to answer (or restarting) must
                # still be stopped by `shutdown`; a dead one costs shutdown nothing.
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
            return handle, {"name": name, **ask(handle.status.remote, wait_s=STATUS_WAIT_S)}
        except (ValueError, AttributeError, RayActorError, GetTimeoutError):
            return None

    def _from_status(self, handle: Any, status: dict[str, Any]) -> WarmActor:
        return WarmActor(
            handle, status["worker"], status["key"], status["resources"], status["name"]
        )

    def _host(
        self, spec: WorkerSpec[Any, Any], options: dict[str, Any], key: str, **naming: Any
    ) -> Any:
        info = {"worker": spec.name, "key": key, "resources": resources(options)}
        host = _host_class().options(**options, **naming)
        return host.remote(spec, info, self.idle_s)

    def _new(self, spec: WorkerSpec[Any, Any], options: dict[str, Any], key: str) -> WarmActor:
        handle = self._host(spec, options, key)
        return WarmActor(handle, spec.name, key, resources(options))

    def _named(
        self, spec: WorkerSpec[Any, Any], options: dict[str, Any], key: str, index: int
    ) -> WarmActor:
        """The cluster's warm actor of this name, started here if no live one has it."""
        name = f"{spec.worker.__name__}-{key}-{index}"
        if not self._exists(name):
            self.make_room(resources(options), 1, keep=key)
        handle = self._host(
            spec,
            options,
            key,
            name=name,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
        )
        return WarmActor(handle, spec.name, key, resources(options), name)
