"""`story studio` end to end: a real Prefect server, work pool, worker and Ray head on loopback.

One studio per module (its start costs a minute on two shared cores): deployments registered
from infra/prefect/prefect.yaml, renders queued on `render_story/render` and run by the worker on
the studio's Ray head, the queue limit, an interval schedule, a killed worker, and `down`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from story.flows.studio.client import studio_client, studio_settings
from story.flows.studio.control import down, status, up
from story.flows.studio.deploy import PREFECT_FILE, register_deployments
from story.flows.studio.layout import StudioLayout
from story.flows.studio.processes import running
from story.flows.studio.submit import submit, submit_render, wait_for
from story.flows.studio.ui_snapshot import chromium_binary, rendered_dom
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import FAST, TWO_SHOTS, write_checkpoints

pytestmark = pytest.mark.slow

STORY = str(Path(sys.executable).with_name("story"))
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[Settings]:
    """A studio on free loopback ports over a 4-clip library and random tiny checkpoints."""
    root = tmp_path_factory.mktemp("studio")
    library = build_library(root / "library", n_good=4, with_bad=False)
    settings = Settings(
        workspace=root / "ws",
        checkpoints=write_checkpoints(root / "checkpoints"),
        studio_api_port=_free_port(),
        studio_ray_port=_free_port(),
        ray_workers=1,
    )
    (root / "story.yaml").write_text(TWO_SHOTS)
    try:
        up(settings)
        from story.flows.build_index import build_index

        with studio_settings(StudioLayout.load(settings)):
            build_index(str(library.manifest), settings.resolved(), use_ray=False)
        yield settings
    finally:
        down(settings)


def _story(settings: Settings) -> Path:
    return Path(settings.workspace).parent / "story.yaml"


def _run(settings: Settings, flow_run_id: str) -> Any:
    with studio_client(StudioLayout.load(settings)) as client:
        return client.read_flow_run(flow_run_id)


def _wait_state(settings: Settings, flow_run_id: str, names: set[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _run(settings, flow_run_id)
        if run.state_name in names:
            return run
        time.sleep(1.0)
    raise AssertionError(f"flow run {flow_run_id} is {run.state_name}, never one of {names}")


def _story_cli(settings: Settings, *args: str) -> dict[str, Any]:
    layout = StudioLayout.load(settings)
    env = dict(os.environ, **layout.worker_env(settings))
    proc = subprocess.run(
        [STORY, *args, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _flow_runs(client: Any) -> list[Any]:
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=200)


def _listening(pid: int) -> set[str]:
    """Addresses the process tree of `pid` listens on."""
    root = psutil.Process(pid)
    addresses = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        addresses |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return addresses


def test_studio_parts_answer_and_listen_on_loopback_only(studio: Settings) -> None:
    report = status(studio)
    assert report["up"], report
    for name, part in report["parts"].items():
        assert part["running"] and part["answering"], name
        listening = _listening(part["pid"])
        assert listening <= LOOPBACK, (name, listening)
    assert _listening(report["parts"]["server"]["pid"]), "the server listens nowhere"


def test_render_deployment_runs_on_the_studio_ray_and_registers_lineage(studio: Settings) -> None:
    report = submit_render(studio, _story(studio), seed=1, params=FAST, wait=True, timeout_s=900)
    summary = report["render"]
    assert report["url"].startswith(f"http://127.0.0.1:{studio.studio_api_port}/runs/flow-run/")
    assert Path(summary["video"]).stat().st_size > 0
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["render_id"] == summary["render_id"] and len(manifest["plots"]) == 2

    lineage = _story_cli(studio, "lineage", summary["render_id"])
    assert lineage["render_id"] == summary["render_id"]
    # The render's synthesis workers stay warm on the studio's Ray head, not in a private Ray.
    workers = _story_cli(studio, "workers", "list")
    assert workers["address"] == StudioLayout.load(studio).ray_address
    assert workers["workers"], workers

    run = _run(studio, report["flow_run_id"])
    assert {"story:story", "checkpoint:tiny"} <= set(run.tags)


@pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (make browser)")
def test_prefect_ui_shows_the_completed_render_run_and_its_artifacts(studio: Settings) -> None:
    layout = StudioLayout.load(studio)
    with studio_client(layout) as client:
        runs = [r for r in _flow_runs(client) if r.state_name == "Completed"]
    run = next(r for r in runs if r.deployment_id is not None and "story:story" in r.tags)
    dom = rendered_dom(f"{layout.ui_url}/v2/runs/flow-run/{run.id}?tab=Artifacts")
    assert run.name in dom and "Completed" in dom
    for key in ("render-story-plots", "render-story-timings", "render-story-outputs"):
        assert key in dom, key


def test_queue_with_limit_one_runs_two_submissions_one_after_the_other(studio: Settings) -> None:
    ids = [
        submit_render(studio, _story(studio), seed=seed, params=FAST)["flow_run_id"]
        for seed in (2, 3)
    ]
    for flow_run_id in ids:
        wait_for(studio, flow_run_id, timeout_s=900)
    first, second = sorted((_run(studio, i) for i in ids), key=lambda r: r.start_time)
    assert first.state_name == second.state_name == "Completed"
    assert second.start_time >= first.end_time, (first.end_time, second.start_time)


def test_interval_schedule_fires(studio: Settings, tmp_path: Path) -> None:
    config = yaml.safe_load(PREFECT_FILE.read_text())
    depth = next(d for d in config["deployments"] if d["name"] == "depth-nightly")
    depth.update(
        name="depth-every-20s",
        parameters={"settings": None, "use_ray": False},
        schedules=[{"interval": 20, "timezone": "UTC", "active": True}],
    )
    config["deployments"] = [depth]
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config))

    layout = StudioLayout.load(studio)
    with studio_client(layout) as client:
        (row,) = register_deployments(client, prefect_file, activate_schedules=True)
    assert row["schedules_active"]
    try:
        deadline = time.monotonic() + 600
        finished = []
        while not finished and time.monotonic() < deadline:
            with studio_client(layout) as client:
                runs = _flow_runs(client)
            finished = [
                r for r in runs
                if str(r.deployment_id) == row["id"] and r.auto_scheduled
                and r.state_name == "Completed"
            ]  # fmt: skip
            time.sleep(2.0)
        assert finished, "no scheduled run of the interval deployment completed"
    finally:
        with studio_client(layout) as client:
            client.delete_deployment(row["id"])


def test_killed_worker_leaves_the_run_crashed_and_a_resubmission_finishes(
    studio: Settings,
) -> None:
    layout = StudioLayout.load(studio)
    flow_run_id = submit_render(studio, _story(studio), seed=4, params=FAST)["flow_run_id"]
    _wait_state(studio, flow_run_id, {"Running"}, timeout=600)
    worker = running(layout.pid_file("worker"))
    assert worker is not None
    for proc in [*worker.children(recursive=True), worker]:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs([worker], timeout=10)

    crashed = _wait_state(studio, flow_run_id, {"Crashed", "Failed", "Completed"}, timeout=400)
    assert crashed.state_name == "Crashed", crashed.state

    assert not status(studio)["parts"]["worker"]["running"]
    up(studio)
    again = submit(studio, "render_story/render", crashed.parameters)
    summary = wait_for(studio, again["flow_run_id"], timeout_s=900)
    assert Path(summary["manifest"]).exists()


def test_down_stops_every_process_of_the_studio(studio: Settings) -> None:
    layout = StudioLayout.load(studio)
    pids = [running(layout.pid_file(part)).pid for part in ("ray", "server", "worker")]
    report = down(studio)
    assert report["left"] == [] and set(report["stopped"]) == {"ray", "server", "worker"}
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert not status(studio)["up"]
    for port in (studio.studio_api_port, studio.studio_ray_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, port
