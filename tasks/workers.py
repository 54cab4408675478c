"""The unit of fan-out work: a worker built once, then called once per item.

A worker is any plain class whose constructor loads what it needs (models) once and whose
`process(item)` handles one item. `WorkerSpec` says how to build one anywhere. An executor runs a
spec over items and yields one `Outcome` per item in completion order, so a caller can keep each
result as soon as it exists. `LocalExecutor` runs in this process; Ray actors and warm pools live
in `story.flows.executors` and run the same specs: a step never knows which executor runs it
(datatrove's Local / Ray pipeline executors are the model).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)


class Worker(Protocol[ItemT_contra, ResultT_co]):
    """Loads its models in `__init__`; handles one item per `process` call."""

    def process(self, item: ItemT_contra, /) -> ResultT_co: ...


@dataclass(frozen=True)
class WorkerSpec(Generic[ItemT, ResultT]):
    """How to build a worker in any process: its class and constructor arguments (picklable).

    `identity` is whatever else decides whether an already loaded worker may serve (for example
    the sha256 of the weights its constructor loads by name); `gpu`: the worker takes one GPU
    where the cluster has them. How many CPUs a worker holds is the executor's choice.
    """

    worker: type[Worker[ItemT, ResultT]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    identity: Any = None
    gpu: bool = True

    @property
    def name(self) -> str:
        return f"{self.worker.__module__}.{self.worker.__qualname__}"

    def build(self) -> Worker[ItemT, ResultT]:
        return self.worker(**self.kwargs)


class Outcome(NamedTuple, Generic[ItemT, ResultT]):
    """One item's result, or the error that stopped it (never both)."""

    item: ItemT
    result: ResultT | None
    error: BaseException | None


class Executor(Protocol):
    """Runs a worker spec over items; `workers` run at once, each with `threads_per_worker`."""

    @property
    def workers(self) -> int: ...

    @property
    def threads_per_worker(self) -> int: ...

    def map(
        self, spec: WorkerSpec[ItemT, ResultT], items: Iterable[ItemT]
    ) -> Iterator[Outcome[ItemT, ResultT]]: ...


def local_threads() -> int:
    """Torch threads for the one in-process worker: every core but one, left for I/O."""
    return max(1, (os.cpu_count() or 2) - 1)


class LocalExecutor:
    """One worker in this process, items in order; an item's error is returned, not raised."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or local_threads()

    @property
    def workers(self) -> int:
        return 1

    @property
    def threads_per_worker(self) -> int:
        return self._threads

    def map(
        self, spec: WorkerSpec[ItemT, ResultT], items: Iterable[ItemT]
    ) -> Iterator[Outcome[ItemT, ResultT]]:
        pending = list(items)
        if not pending:
            return
        worker = spec.build()
        for item in pending:
            try:
                yield Outcome(item, worker.process(item), None)
            except Exception as exc:  # noqa: BLE001 - the caller decides what a failure means
                yield Outcome(item, None, exc)
