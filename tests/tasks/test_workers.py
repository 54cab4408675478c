"""The worker protocol in-process: one worker built once, outcomes in order, errors returned."""

from __future__ import annotations

import os

from story.tasks.workers import LocalExecutor, Outcome, WorkerSpec, local_threads


class Halves:
    """Counts its constructions; refuses odd items."""

    built = 0

    def __init__(self, scale: int) -> None:
        Halves.built += 1
        self.scale = scale

    def process(self, item: int) -> int:
        if item % 2:
            raise ValueError(f"{item} is odd")
        return item // 2 * self.scale


def test_local_executor_builds_one_worker_and_keeps_going_after_an_error() -> None:
    Halves.built = 0
    outcomes = list(LocalExecutor().map(WorkerSpec(Halves, {"scale": 10}), [4, 3, 8]))
    assert Halves.built == 1
    assert [(o.item, o.result) for o in outcomes] == [(4, 20), (3, None), (8, 40)]
    assert isinstance(outcomes[1].error, ValueError) and str(outcomes[1].error) == "3 is odd"
    assert all(isinstance(o, Outcome) for o in outcomes)


def test_nothing_to_do_loads_nothing() -> None:
    Halves.built = 0
    assert list(LocalExecutor().map(WorkerSpec(Halves, {"scale": 1}), [])) == []
    assert Halves.built == 0


def test_spec_names_its_worker_and_local_threads_leave_a_core() -> None:
    assert WorkerSpec(Halves).name == f"{__name__}.Halves"
    assert LocalExecutor(threads=3).threads_per_worker == 3
    assert local_threads() == max(1, (os.cpu_count() or 2) - 1)
    assert LocalExecutor().workers == 1
