"""Executors: the same worker spec in-process, on fresh Ray actors and on warm ones; Ray's own
retries for dead actors; warm workers kept between fan-outs, replaced when dead for good, out of
the way when idle."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

from story.flows.executors import LocalExecutor, RayExecutor, WarmExecutor, executor_for
from story.flows.executors.ray_session import MAX_RESTARTS, actor_options
from story.flows.executors.warm_pool import WarmPool
from story.flows.executors.warm_workers import warm_pool
from story.tasks.settings import Settings
from story.tasks.workers import Executor, WorkerSpec
from tests.faults.conftest import DiesOnce

pytestmark = pytest.mark.usefixtures("ray_local")


class CountsLoads:
    """A worker whose constructor stands for a model load: it appends its pid to a file."""

    def __init__(self, loads: str) -> None:
        with open(loads, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def process(self, item: int) -> tuple[int, int]:
        return item, os.getpid()


class Squares:
    """A deterministic step with an application error on one item: 13 is refused."""

    def __init__(self, offset: int, calls: str) -> None:
        self.offset = offset
        self.calls = calls

    def process(self, item: int) -> int:
        with open(self.calls, "a") as handle:
            handle.write(f"{item}\n")
        if item == 13:
            raise ValueError(f"item {item} is refused")
        return item * item + self.offset


class SlowPid:
    """Notes its pid in a file when a call starts, then answers after `seconds`: long enough
    to be killed mid-call."""

    def __init__(self, seconds: float, started: str) -> None:
        self.seconds = seconds
        self.started = started

    def process(self, item: int) -> tuple[int, int]:
        with open(self.started, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(self.seconds)
        return item, os.getpid()


def _run(executor: Executor, spec: WorkerSpec, items: list) -> list:
    outcomes = list(executor.map(spec, items))
    assert [error for _, _, error in outcomes if error is not None] == []
    return sorted(result for _, result, _ in outcomes)


@pytest.fixture
def pool() -> WarmPool:
    warm = WarmPool(idle_s=600)
    yield warm
    warm.shutdown()


def _loads(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _outcomes(executor: Executor, spec: WorkerSpec, items: list) -> dict:
    return {
        item: (result, type(error).__name__ if error else None, str(error or ""))
        for item, result, error in executor.map(spec, items)
    }


def test_every_executor_gives_the_same_outcomes(pool: WarmPool, tmp_path: Path) -> None:
    items = [3, 13, 5, 8, 2, 21]
    results = {}
    for name, executor in {
        "local": LocalExecutor(),
        "ray": RayExecutor(workers=2),
        "warm": WarmExecutor(pool, workers=2),
    }.items():
        calls = tmp_path / f"{name}.calls"
        results[name] = _outcomes(
            executor, WorkerSpec(Squares, {"offset": 1, "calls": str(calls)}), items
        )
        assert sorted(int(i) for i in calls.read_text().split()) == sorted(items)

    assert results["local"] == results["ray"] == results["warm"]
    assert results["local"][8] == (65, None, "")
    assert results["local"][13] == (None, "ValueError", "item 13 is refused")


def test_an_application_error_is_not_retried_and_the_rest_finish(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    outcomes = _outcomes(
        RayExecutor(workers=1), WorkerSpec(Squares, {"offset": 0, "calls": str(calls)}), [13, 4]
    )
    assert outcomes == {13: (None, "ValueError", "item 13 is refused"), 4: (16, None, "")}
    assert calls.read_text().split() == ["13", "4"]


def test_an_actor_killed_mid_call_is_restarted_and_its_call_retried_by_ray(
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    spec = WorkerSpec(SlowPid, {"seconds": 5.0, "started": str(started)})
    outcomes: list = []
    runner = threading.Thread(target=lambda: outcomes.extend(RayExecutor(workers=1).map(spec, [7])))
    runner.start()
    deadline = time.monotonic() + 600  # an actor can take minutes to start on a loaded machine
    while not _loads(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = int(_loads(started)[0])
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=600)
    assert not runner.is_alive()

    assert [(item, error) for item, _, error in outcomes] == [(7, None)]
    assert outcomes[0].result == (7, int(_loads(started)[-1]))
    assert len(_loads(started)) == 2 and int(_loads(started)[1]) != victim


def test_executor_for_picks_in_process_fresh_or_warm_actors() -> None:
    settings = Settings(ray_workers=3, worker_idle_s=600)
    assert isinstance(executor_for(settings, use_ray=False), LocalExecutor)
    fresh = executor_for(settings, use_ray=True)
    assert isinstance(fresh, RayExecutor) and fresh.workers == 3
    assert isinstance(executor_for(settings, use_ray=True, warm=True), WarmExecutor)
    cold = Settings(worker_idle_s=0)
    assert isinstance(executor_for(cold, use_ray=True, warm=True), RayExecutor)
    assert executor_for(settings, use_ray=True, workers=1).workers == 1


def test_a_second_fan_out_reuses_the_warm_workers(pool: WarmPool, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    spec = WorkerSpec(CountsLoads, {"loads": str(loads)})
    first = _run(WarmExecutor(pool, workers=2), spec, list(range(6)))
    second = _run(WarmExecutor(pool, workers=2), spec, list(range(6, 12)))

    assert [item for item, _ in first + second] == list(range(12))
    assert len(_loads(loads)) == 2
    assert {pid for _, pid in second} <= {pid for _, pid in first}
    assert len(pool.describe()) == 2


def test_another_identity_gets_its_own_workers(pool: WarmPool, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    executor = WarmExecutor(pool, workers=1)
    for sha, items in (("a", [1, 2]), ("b", [3, 4]), ("a", [5, 6])):
        _run(executor, WorkerSpec(CountsLoads, {"loads": str(loads)}, identity={"sha": sha}), items)
    assert len(_loads(loads)) == 2


def test_a_warm_worker_that_died_for_good_is_replaced(pool: WarmPool, tmp_path: Path) -> None:
    spec = WorkerSpec(CountsLoads, {"loads": str(tmp_path / "loads")})
    first = _run(WarmExecutor(pool, workers=1), spec, [1])
    for _ in range(MAX_RESTARTS + 1):
        for status in pool.describe():
            os.kill(status["pid"], signal.SIGKILL)
        time.sleep(1.0)
    assert pool.describe() == []

    second = _run(WarmExecutor(pool, workers=1), spec, [2])
    assert second[0][0] == 2
    assert second[0][1] != first[0][1]
    assert len(pool.describe()) == 1


def test_a_warm_worker_killed_mid_batch_has_its_item_retried(
    pool: WarmPool, tmp_path: Path
) -> None:
    marker = tmp_path / "died"
    items = list(range(8))
    spec = WorkerSpec(DiesOnce, {"marker": str(marker)})
    results = _run(WarmExecutor(pool, workers=2), spec, items)
    assert [item for item, _ in results] == items
    assert marker.exists()
    again = _run(WarmExecutor(pool, workers=2), spec, items)
    assert [item for item, _ in again] == items


def test_idle_warm_workers_give_way_to_other_work(tmp_path: Path) -> None:
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    pool = warm_pool(Settings(worker_idle_s=600))
    assert pool is not None
    try:
        warm = WorkerSpec(CountsLoads, {"loads": str(tmp_path / "warm")})
        _run(WarmExecutor(pool, workers=cpus), warm, list(range(cpus)))
        assert len(pool.describe()) == cpus

        done: list = []
        plain = WorkerSpec(CountsLoads, {"loads": str(tmp_path / "plain")})
        fan_out = threading.Thread(
            target=lambda: done.append(_run(RayExecutor(workers=1), plain, [1, 2])), daemon=True
        )
        fan_out.start()
        fan_out.join(timeout=120)
        assert done and [item for item, _ in done[0]] == [1, 2]
        assert len(pool.describe()) < cpus
    finally:
        pool.shutdown()


def test_an_idle_warm_worker_exits_by_itself(tmp_path: Path) -> None:
    short = WarmPool(idle_s=1.0)
    try:
        spec = WorkerSpec(CountsLoads, {"loads": str(tmp_path / "loads")})
        _run(WarmExecutor(short, workers=1), spec, [1])
        deadline = time.monotonic() + 60
        while short.describe() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert short.describe() == []
    finally:
        short.shutdown()


def test_named_workers_are_shared_by_pools_of_other_processes(tmp_path: Path) -> None:
    namespace = f"story-test-{secrets.token_hex(4)}"
    loads = tmp_path / "loads"
    spec = WorkerSpec(CountsLoads, {"loads": str(loads)})
    first_process, second_process = WarmPool(namespace, 600), WarmPool(namespace, 600)
    try:
        first = _run(WarmExecutor(first_process, workers=1), spec, [1, 2])
        second = _run(WarmExecutor(second_process, workers=1), spec, [3, 4])
        assert len(_loads(loads)) == 1
        assert {pid for _, pid in first} == {pid for _, pid in second}
        listed = second_process.describe()
        assert [w["worker"] for w in listed] == [f"{__name__}.CountsLoads"]
        assert listed[0]["resources"]["CPU"] == actor_options()["num_cpus"]
    finally:
        stopped = second_process.shutdown()
    assert len(stopped) == 1
    assert first_process.describe() == []
