"""Warm workers on a real Ray cluster: successive processes share them, `story workers` frees
them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.test_multinode import _free_port, _ray_env, _start_node, _stop, _wait_for_nodes

REPO = Path(__file__).resolve().parents[2]
STORY = str(Path(sys.executable).with_name("story"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node cluster started by `ray start --head`; yields its address."""
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    temp_dir = tempfile.mkdtemp(prefix="ray-warm-", dir="/tmp")
    address = f"127.0.0.1:{_free_port()}"
    node = _start_node(
        ["--head", f"--port={address.rsplit(':', 1)[1]}", "--include-dashboard=false"],
        temp_dir,
        log,
    )
    try:
        _wait_for_nodes(address, 1, [node])
        yield address
    finally:
        _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _run(address: str, *args: str) -> dict:
    env = dict(_ray_env(), STORY_RAY_ADDRESS=address, STORY_WORKER_IDLE_S="600")
    proc = subprocess.run(
        list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_successive_processes_share_warm_workers_until_stopped(head: str) -> None:
    driver = [sys.executable, "-m", "tests.flows.warm_workers_driver", "3"]
    first = _run(head, *driver)
    second = _run(head, *driver)
    assert len(first["pids"]) == 1
    assert second["pids"] == first["pids"]

    listed = _run(head, STORY, "workers", "list", "--json")
    assert [w["pid"] for w in listed["workers"]] == first["pids"]
    assert listed["workers"][0]["name"].startswith("ReportsPid-")

    stopped = _run(head, STORY, "workers", "stop", "--json")
    assert len(stopped["stopped"]) == 1
    assert _run(head, STORY, "workers", "list", "--json")["workers"] == []

    third = _run(head, *driver)
    assert third["pids"] != first["pids"]
    _run(head, STORY, "workers", "stop", "--json")
