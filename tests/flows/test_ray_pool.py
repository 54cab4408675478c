"""Warm Ray workers: kept between fan-outs, replaced when dead, out of the way when idle."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

from story.flows.ray_pool import WarmPool, actor_options, run_on_actors, warm_pool
from story.tasks.settings import Settings
from tests.faults.conftest import DiesOnce

pytestmark = pytest.mark.usefixtures("ray_local")


class CountsLoads:
    """A worker whose constructor stands for a model load: it appends its pid to a file."""

    def __init__(self, loads: str) -> None:
        with open(loads, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def process(self, item: int) -> tuple[int, int]:
        return item, os.getpid()


def _run(pool: WarmPool | None, worker: type, init: dict, items: list, **kwargs) -> list:
    outcomes = list(run_on_actors(worker, init, items, "process", pool=pool, **kwargs))
    assert [error for _, _, error in outcomes if error is not None] == []
    return sorted(result for _, result, _ in outcomes)


@pytest.fixture
def pool() -> WarmPool:
    warm = WarmPool(idle_s=600)
    yield warm
    warm.shutdown()


def _loads(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_second_fan_out_reuses_the_warm_workers(pool: WarmPool, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    first = _run(pool, CountsLoads, {"loads": str(loads)}, list(range(6)), workers=2)
    second = _run(pool, CountsLoads, {"loads": str(loads)}, list(range(6, 12)), workers=2)

    assert [item for item, _ in first + second] == list(range(12))
    assert len(_loads(loads)) == 2
    assert {pid for _, pid in second} <= {pid for _, pid in first}
    assert len(pool.describe()) == 2


def test_another_identity_gets_its_own_workers(pool: WarmPool, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    _run(pool, CountsLoads, {"loads": str(loads)}, [1, 2], workers=1, identity={"sha": "a"})
    _run(pool, CountsLoads, {"loads": str(loads)}, [3, 4], workers=1, identity={"sha": "b"})
    _run(pool, CountsLoads, {"loads": str(loads)}, [5, 6], workers=1, identity={"sha": "a"})
    assert len(_loads(loads)) == 2


def test_a_warm_worker_that_died_for_good_is_replaced(pool: WarmPool, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    first = _run(pool, CountsLoads, {"loads": str(loads)}, [1], workers=1)
    for _ in range(actor_options()["max_restarts"] + 1):
        for status in pool.describe():
            os.kill(status["pid"], signal.SIGKILL)
        time.sleep(1.0)
    assert pool.describe() == []

    second = _run(pool, CountsLoads, {"loads": str(loads)}, [2], workers=1)
    assert second[0][0] == 2
    assert second[0][1] != first[0][1]
    assert len(pool.describe()) == 1


def test_a_warm_worker_killed_mid_batch_has_its_item_retried(
    pool: WarmPool, tmp_path: Path
) -> None:
    marker = tmp_path / "died"
    items = list(range(8))
    results = _run(pool, DiesOnce, {"marker": str(marker)}, items, workers=2)
    assert [item for item, _ in results] == items
    assert marker.exists()
    again = _run(pool, DiesOnce, {"marker": str(marker)}, items, workers=2)
    assert [item for item, _ in again] == items


def test_idle_warm_workers_give_way_to_other_work(tmp_path: Path) -> None:
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    pool = warm_pool(Settings(worker_idle_s=600))
    try:
        loads = {"loads": str(tmp_path / "warm")}
        _run(pool, CountsLoads, loads, list(range(cpus)), workers=cpus)
        assert len(pool.describe()) == cpus

        done: list = []
        plain = threading.Thread(
            target=lambda: done.append(
                _run(None, CountsLoads, {"loads": str(tmp_path / "plain")}, [1, 2], workers=1)
            ),
            daemon=True,
        )
        plain.start()
        plain.join(timeout=120)
        assert done and [item for item, _ in done[0]] == [1, 2]
        assert len(pool.describe()) < cpus
    finally:
        pool.shutdown()


def test_an_idle_warm_worker_exits_by_itself(tmp_path: Path) -> None:
    short = WarmPool(idle_s=1.0)
    try:
        _run(short, CountsLoads, {"loads": str(tmp_path / "loads")}, [1], workers=1)
        deadline = time.monotonic() + 60
        while short.describe() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert short.describe() == []
    finally:
        short.shutdown()


def test_named_workers_are_shared_by_pools_of_other_processes(tmp_path: Path) -> None:
    namespace = f"story-test-{secrets.token_hex(4)}"
    loads = tmp_path / "loads"
    first_process, second_process = WarmPool(namespace, 600), WarmPool(namespace, 600)
    try:
        first = _run(first_process, CountsLoads, {"loads": str(loads)}, [1, 2], workers=1)
        second = _run(second_process, CountsLoads, {"loads": str(loads)}, [3, 4], workers=1)
        assert len(_loads(loads)) == 1
        assert {pid for _, pid in first} == {pid for _, pid in second}
        listed = second_process.describe()
        assert [w["worker"] for w in listed] == [f"{__name__}.CountsLoads"]
        assert listed[0]["resources"]["CPU"] == actor_options()["num_cpus"]
    finally:
        stopped = second_process.shutdown()
    assert len(stopped) == 1
    assert first_process.describe() == []
