"""`story studio up | down | status`: start, stop and inspect the studio's processes.

Order matters: Ray first (flow runs join it), then the Prefect server, the work pool and
deployments, then the worker that polls the pool. `down` stops them in reverse, each as a whole
process tree, and then looks for orphans still naming the studio's Ray session folder.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from story.flows.studio.deploy import PREFECT_FILE, register_deployments
from story.flows.studio.layout import HOST, PARTS, POOL, WORKER_NAME, StudioLayout, child_env
from story.flows.studio.processes import marked, running, spawn, stop_tree
from story.flows.studio.zombies import ensure_zombie_automation
from story.tasks.errors import StoryError
from story.tasks.settings import Settings

START_TIMEOUT_S = 300.0


class StudioError(StoryError):
    """The studio could not start (a port taken, a part that died), naming its log."""


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait(ready: Any, part: str, layout: StudioLayout, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if running(layout.pid_file(part)) is None:
            raise StudioError(f"{part} exited while starting; see {layout.log_file(part)}")
        time.sleep(0.5)
    raise StudioError(f"{part} did not come up in {timeout:.0f} s; see {layout.log_file(part)}")


def _server_healthy(layout: StudioLayout) -> bool:
    import httpx

    try:
        return httpx.get(f"{layout.api_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ray_args(layout: StudioLayout, num_cpus: int) -> list[str]:
    ray = str(Path(sys.executable).with_name("ray"))
    return [
        ray,
        "start",
        "--head",
        "--block",
        f"--node-ip-address={HOST}",
        f"--port={layout.ray_port}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={layout.ray_temp_dir}",
        # Ray's fixed default ports for these would clash with any other Ray on the host.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _start(part: str, args: list[str], env: dict[str, str], layout: StudioLayout) -> None:
    if running(layout.pid_file(part)) is None:
        spawn(args, child_env(env), layout.pid_file(part), layout.log_file(part))


def _check_ports(layout: StudioLayout) -> None:
    parts = {"ray": layout.ray_port, "server": layout.api_port}
    for part, port in parts.items():
        if running(layout.pid_file(part)) is None and port_open(port):
            raise StudioError(
                f"port {port} on {HOST} is taken by another program; choose another "
                f"(STORY_STUDIO_{'RAY' if part == 'ray' else 'API'}_PORT)"
            )


def up(
    settings: Settings,
    deploy: bool = True,
    prefect_file: Path = PREFECT_FILE,
    activate_schedules: bool = False,
) -> dict[str, Any]:
    """Start whatever part of the studio is not running (a running studio keeps its ports);
    register the deployments."""
    from story.flows.studio.client import studio_client

    layout = StudioLayout.load(settings)
    if not any(running(layout.pid_file(part)) for part in PARTS):
        layout = StudioLayout.from_settings(settings)
        _check_ports(layout)
        layout.save()
    _start("ray", _ray_args(layout, settings.studio_ray_cpus), layout.ray_env(), layout)
    _start(
        "server", [sys.executable, "-m", "prefect", "server", "start"], layout.server_env(), layout
    )
    _wait(lambda: port_open(layout.ray_port), "ray", layout)
    _wait(lambda: _server_healthy(layout), "server", layout)
    deployments: list[dict[str, Any]] = []
    if deploy:
        with studio_client(layout) as client:
            deployments = register_deployments(
                client, prefect_file, activate_schedules=activate_schedules
            )
            ensure_zombie_automation(client)
    worker = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        POOL,
        "--type",
        "process",
        "--name",
        WORKER_NAME,
    ]
    _start("worker", worker, layout.worker_env(settings), layout)
    _wait(lambda: _worker_online(layout), "worker", layout)
    return {**status(settings), "deployments": deployments}


def _worker_online(layout: StudioLayout) -> bool:
    from story.flows.studio.client import studio_client

    try:
        with studio_client(layout) as client:
            workers = client.read_workers_for_work_pool(POOL, offset=0, limit=50)
    except Exception:  # noqa: BLE001 - the pool or the server may not answer yet
        return False
    return any(w.name == WORKER_NAME and str(w.status).endswith("ONLINE") for w in workers)


def status(settings: Settings) -> dict[str, Any]:
    """Each part: running (pid) and answering (Ray port, API health, worker heartbeat)."""
    layout = StudioLayout.load(settings)
    parts: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        proc = running(layout.pid_file(part))
        parts[part] = {"pid": proc.pid if proc else None, "running": proc is not None}
    parts["ray"].update(address=layout.ray_address, answering=port_open(layout.ray_port))
    healthy = _server_healthy(layout)
    parts["server"].update(api=layout.api_url, ui=layout.ui_url, answering=healthy)
    parts["worker"].update(pool=POOL, answering=healthy and _worker_online(layout))
    return {
        "studio": str(layout.root),
        "up": all(p["running"] and p["answering"] for p in parts.values()),
        "parts": parts,
        "logs": str(layout.root / "logs"),
    }


def down(settings: Settings) -> dict[str, Any]:
    """Stop the worker, the server and Ray (each as a process tree); report anything that had
    to be killed and any process still naming the studio's folders (there should be none)."""
    layout = StudioLayout.load(settings)
    killed: dict[str, list[int]] = {}
    stopped = []
    for part in ("worker", "server", "ray"):
        proc = running(layout.pid_file(part))
        if proc is not None:
            killed[part] = stop_tree(proc)
            stopped.append(part)
        layout.pid_file(part).unlink(missing_ok=True)
    markers = (str(layout.ray_temp_dir),)
    strays = marked(markers)
    stop_tree(None, strays)
    left = [p.pid for p in marked(markers)]
    shutil.rmtree(layout.ray_temp_dir, ignore_errors=True)
    return {
        "studio": str(layout.root),
        "stopped": stopped,
        "killed": killed,
        "strays_stopped": [p.pid for p in strays],
        "left": left,
    }
