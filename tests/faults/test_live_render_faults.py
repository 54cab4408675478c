"""Faults under a live `story render` subprocess: its local Ray's raylet killed mid-render, and
the disk filling while it writes (RLIMIT_FSIZE: writes past the limit fail with EFBIG). Either
way nothing is committed (no manifest.json, nothing registered) and a plain rerun finishes."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.settings import Settings
from tests.faults.conftest import REPO, Recorder, child_env
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import story_file, story_studio

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def studio(tmp_path: Path) -> Settings:
    library = build_library(tmp_path / "library", n_good=4, with_bad=False)
    return story_studio(tmp_path, library.manifest)


def _render_cmd(studio: Settings, out: Path, ray: bool) -> list[str]:
    return [
        *(sys.executable, "-m", "story.flows.cli", "render", str(story_file(studio))),
        *("--workspace", str(studio.workspace), "--out", str(out)),
        *("--steps", "2", "--guidance", "2.0", "--json", "--ray" if ray else "--no-ray"),
    ]


def _env(studio: Settings) -> dict[str, str]:
    return dict(child_env(), STORY_CHECKPOINTS=str(studio.checkpoints), STORY_RAY_WORKERS="1")


def _committed(out: Path) -> list[Path]:
    return sorted(out.glob("*/manifest.json")) if out.exists() else []


def _rerun(studio: Settings, out: Path) -> dict:
    done = subprocess.run(
        _render_cmd(studio, out, ray=False),
        env=_env(studio),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _descendant(root: psutil.Process, name: str) -> psutil.Process | None:
    for child in root.children(recursive=True):
        try:
            if child.name() == name:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_raylet_killed_mid_render_commits_nothing_and_a_rerun_finishes(
    studio: Settings, tmp_path: Path, fault: Recorder
) -> None:
    out = tmp_path / "renders"
    child = subprocess.Popen(
        _render_cmd(studio, out, ray=True),
        env=_env(studio),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(child.pid)
    deadline, raylet, actor = time.monotonic() + 300, None, None
    while time.monotonic() < deadline and child.poll() is None and actor is None:
        raylet = raylet or _descendant(parent, "raylet")
        actor = next(
            (p for p in parent.children(recursive=True) if p.name().startswith("ray::")), None
        )
        time.sleep(0.2)
    assert raylet is not None and actor is not None, "the render never started Ray actors"
    time.sleep(1.0)
    raylet.send_signal(signal.SIGKILL)
    try:
        _, err = child.communicate(timeout=300)
        code: int | str = child.returncode
    except subprocess.TimeoutExpired:
        for process in [parent, *parent.children(recursive=True)]:
            process.kill()
        _, err = child.communicate()
        code = "hung (killed after 300 s)"
    committed = _committed(out)
    registered = LineageRegistry(studio.workspace).renders()
    last = err.strip().splitlines()[-1] if err.strip() else ""
    rerun = _rerun(studio, out)
    held = code not in (0, "hung (killed after 300 s)") and not committed and not registered
    fault(
        "crash: the raylet of a live `story render --ray` killed -9",
        "render fails, nothing committed or registered; a rerun finishes",
        "render fails, nothing committed or registered; a rerun finishes"
        if held and rerun["render_id"]
        else f"exit {code}, committed {len(committed)}, registered {len(registered)}: {last}",
        held=held,
    )
    assert code != 0 and code != "hung (killed after 300 s)", last
    assert committed == [] and registered == []
    assert (out / rerun["render_id"] / "manifest.json").is_file()


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_disk_that_fills_during_a_live_render_commits_nothing(
    studio: Settings, tmp_path: Path, fault: Recorder
) -> None:
    out = tmp_path / "renders"
    limit = 16 * 1024
    done = subprocess.run(
        _render_cmd(studio, out, ray=False),
        env=_env(studio),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=lambda: _limit_file_size(limit),  # noqa: PLW1509 - a child-only limit
    )
    try:
        error = str(json.loads(done.stdout).get("error", ""))
    except json.JSONDecodeError:
        error = ""
    committed = _committed(out)
    partial = [p for p in out.glob(".*")] if out.exists() else []
    registered = LineageRegistry(studio.workspace).renders()
    rerun = _rerun(studio, out)
    clear = "cannot write" in error and str(tmp_path) in error
    held = done.returncode != 0 and clear and not committed and not registered
    fault(
        f"disk full: a live `story render` cannot write files past {limit // 1024} KiB",
        "a --json error naming the file, nothing committed or registered; a rerun finishes",
        "a --json error naming the file, nothing committed or registered; a rerun finishes"
        if held
        else f"exit {done.returncode}, committed {len(committed)}, partial {len(partial)}, "
        f"registered {len(registered)}: {error or done.stderr[-200:]}"[:300],
        held=held,
    )
    assert done.returncode != 0
    assert committed == [] and registered == []
    assert clear, (done.stdout[-1000:], done.stderr[-1000:])
    assert (out / rerun["render_id"] / "manifest.json").is_file()
    assert os.path.getsize(out / rerun["render_id"] / "manifest.json") > 0
