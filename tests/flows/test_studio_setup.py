"""`story studio` without starting it: its deployments file, settings, ports and error paths."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from story.flows.studio.control import StudioError, up
from story.flows.studio.deploy import PREFECT_FILE, read_prefect_file, work_queue_limits
from story.flows.studio.layout import StudioLayout, story_env
from story.flows.studio.processes import running, spawn, stop_tree
from story.tasks.settings import Settings

STORY = str(Path(sys.executable).with_name("story"))


def test_render_deployments_share_one_queue_with_limit_one() -> None:
    config = read_prefect_file(PREFECT_FILE)
    limits = work_queue_limits(config)["story-ray"]
    assert limits["renders"] == 1 and limits["library"] == 1
    by_name = {d["name"]: d for d in config["deployments"]}
    assert by_name["render"]["entrypoint"] == "flows/render_story.py:render_story"
    assert {"checkpoint", "seed", "candidates"} <= set(by_name["render"]["parameters"])
    assert by_name["rerender"]["work_pool"]["work_queue_name"] == "renders"


def test_a_bad_deployments_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        read_prefect_file(tmp_path / "missing.yaml")
    bad = tmp_path / "prefect.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(ValueError, match="prefect.yaml.*deployments"):
        read_prefect_file(bad)


def test_worker_environment_gives_flow_runs_the_studio_settings(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path / "ws", storage_options={"region": "x"}, fps=12.0)
    layout = StudioLayout.from_settings(settings)
    env = layout.worker_env(settings)
    assert env["STORY_RAY_ADDRESS"] == layout.ray_address
    assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{settings.studio_api_port}/api"
    assert env["RAY_AUTH_TOKEN"] == layout.ray_token_file.read_text()
    assert oct(layout.ray_token_file.stat().st_mode & 0o777) == "0o600"
    child = _settings_from(story_env(settings))
    assert child.workspace == (tmp_path / "ws").resolve()
    assert child.storage_options == {"region": "x"} and child.fps == 12.0
    assert (
        layout.database.startswith("sqlite+aiosqlite:///") and str(layout.root) in layout.database
    )
    assert len(str(layout.ray_temp_dir)) < 40  # Ray's socket paths stay short


def _settings_from(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = Settings(
            workspace=tmp_path / "ws", studio_api_port=port, studio_ray_port=_free_port()
        )
        with pytest.raises(StudioError, match=f"port {port}.*STORY_STUDIO_API_PORT"):
            up(settings)
    assert not (tmp_path / "ws" / "studio" / "pids").exists()


def test_status_of_a_studio_that_is_not_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [STORY, "studio", "status", "--workspace", str(tmp_path / "ws"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    assert report["up"] is False
    assert not any(part["running"] for part in report["parts"].values())


def test_submit_without_a_studio_says_how_to_start_one(tmp_path: Path) -> None:
    story = tmp_path / "story.yaml"
    story.write_text("title: T\nplots:\n  - A red ball bounces on the grass\n")
    env = dict(os.environ, STORY_STUDIO_API_PORT=str(_free_port()))
    proc = subprocess.run(
        [STORY, "render", str(story), "--submit", "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "story studio up" in proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_started_part_is_stopped_with_its_whole_process_tree(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "pids" / "part.pid", tmp_path / "logs" / "part.log"
    # a child and a grandchild in a new process group: both must go with the part
    script = "sleep 300 & setsid bash -c 'sleep 301' & echo started; wait"
    spawn(["bash", "-c", script], dict(os.environ), pid_file, log)
    deadline = time.monotonic() + 30
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    root = running(pid_file)
    assert root is not None
    tree = [root, *root.children(recursive=True)]
    assert len(tree) >= 3
    stop_tree(root)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    assert running(pid_file) is None

    record = json.loads(pid_file.read_text())
    record["started"] -= 100  # the same pid with another start time is another process
    record["pid"] = os.getpid()
    pid_file.write_text(json.dumps(record))
    assert running(pid_file) is None
