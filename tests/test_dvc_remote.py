"""The project's default DVC remote moves a studio's data between checkouts, and a render pulled
into a fresh checkout reproduces identically there.

The checkout that pushed is deleted before the second one is cloned at another path, so the
second has nothing but git and the remote, and the clip index's media paths (stored relative to
the library) must lead to the second checkout's own files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from story.flows.build_index import build_index
from story.flows.render_story import render_story
from story.flows.reproduce import reproduce_render
from story.tasks.settings import REPO_ROOT, Settings
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import TWO_SHOTS, write_checkpoints

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

DVC = str(Path(sys.executable).parent / "dvc")
TRACKED = ("library", "checkpoints", "ws/lancedb", "renders")


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _git(repo: Path, *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], repo)


def _settings(repo: Path) -> Settings:
    return Settings(workspace=repo / "ws", checkpoints=repo / "checkpoints")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_push_from_one_checkout_pull_into_another_and_reproduce(tmp_path: Path) -> None:
    origin, repo = tmp_path / "origin.git", tmp_path / "studio"
    _run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _run([DVC, "init", "-q"], repo)
    shutil.copyfile(REPO_ROOT / ".dvc" / "config", repo / ".dvc" / "config")

    library = build_library(repo / "library", n_good=4, with_bad=False)
    write_checkpoints(repo / "checkpoints")
    settings = _settings(repo)
    build_index(str(library.manifest), settings.resolved(), use_ray=False)
    (repo / "story.yaml").write_text(TWO_SHOTS)
    summary = render_story(
        str(repo / "story.yaml"),
        settings.resolved(),
        out=str(repo / "renders"),
        params={"steps": 2, "guidance": 2.0},
        use_ray=False,
    )
    render_folder = Path(summary["folder"]).relative_to(repo)

    _run([DVC, "add", "-q", *TRACKED], repo)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "studio data")
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "origin", "main")
    _run([DVC, "push", "-q"], repo)
    remote = tmp_path / "story-dvc-remote"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))
    pushed = {name: _tree_bytes(repo / name) for name in ("library", "checkpoints", "renders")}

    shutil.rmtree(repo)
    repo = tmp_path / "another-machine" / "studio"
    repo.parent.mkdir()
    _run(["git", "clone", "-q", "-b", "main", str(origin), str(repo)], tmp_path)
    assert not (repo / "renders").exists()
    # The default remote is a folder beside the checkout; this machine mounts it elsewhere.
    _run([DVC, "remote", "modify", "--local", "storage", "url", str(remote)], repo)
    _run([DVC, "pull", "-q"], repo)
    assert json.loads(_run([DVC, "status", "--json"], repo)) == {}
    for name, files in pushed.items():
        assert _tree_bytes(repo / name) == files, name

    result = reproduce_render(str(repo / render_folder), _settings(repo).resolved())
    assert result["identical"] is True
    assert result["render_id"] == summary["render_id"]
