"""A real two-node Ray cluster on 127.0.0.1: build_index connects by address, work runs on both."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.flows.library_fixture import build_library

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
TOKEN = secrets.token_hex(32)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_env() -> dict[str, str]:
    """Environment of the nodes and the driver: token auth with this test run's own token."""
    return dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=TOKEN,
    )


def _start_node(args: list[str], temp_dir: str, log: Path) -> subprocess.Popen:
    """`ray start --block` in a new process group, so teardown stops exactly this node."""
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        "--disable-usage-stats",
        "--block",
    ]
    return subprocess.Popen(
        [RAY, "start", *args, *common],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=_ray_env(),
    )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the node's process tree (its group and any child that left it), then SIGKILL."""
    try:
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _wait_for_nodes(
    address: str, count: int, nodes: list[subprocess.Popen], timeout: float = 180.0
) -> None:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [node.args for node in nodes if node.poll() is not None]
        if dead:
            raise RuntimeError(f"a Ray node exited early (see its log): {dead}")
        proc = subprocess.run(
            [sys.executable, "-c", probe, address],
            capture_output=True,
            text=True,
            timeout=120,
            env=_ray_env(),
        )
        if proc.returncode == 0 and int(proc.stdout.strip().splitlines()[-1]) >= count:
            return
        time.sleep(2)
    raise TimeoutError(f"the cluster at {address} did not reach {count} nodes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """A head node and a worker node as separate `ray start` processes; yields the address."""
    logs = tmp_path_factory.mktemp("ray-logs")
    temp_dir = tempfile.mkdtemp(prefix="ray-mn-", dir="/tmp")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [
        _start_node(
            [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
            ],
            temp_dir,
            logs / "head.log",
        )
    ]
    try:
        _wait_for_nodes(address, 1, nodes)
        nodes.append(_start_node([f"--address={address}"], temp_dir, logs / "worker.log"))
        _wait_for_nodes(address, 2, nodes)
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_build_index_on_a_two_node_cluster_uses_both_nodes(cluster, tmp_path) -> None:
    from prefect.settings import PREFECT_API_URL

    library = build_library(tmp_path / "lib", n_good=6, with_bad=True)
    env = dict(_ray_env(), STORY_RAY_ADDRESS=cluster, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.flows.multinode_driver",
            str(library.manifest),
            str(tmp_path / "ws"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["address"] == cluster
    assert len(report["alive_nodes"]) == 2
    assert report["summary"]["rows"] == len(library.good)
    assert len(report["summary"]["quarantined"]) == len(library.bad)
    assert report["summary"]["failed_shards"] == []
    assert set(report["actor_nodes"]) == set(report["alive_nodes"])
