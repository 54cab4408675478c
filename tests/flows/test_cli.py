"""The `story` command as a TD scripts it: --help everywhere, one JSON document with --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from story.tasks.library.search_service import lock_path, service_call, service_starting
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library

STORY = [sys.executable, "-m", "story.flows.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([*STORY, *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("command", ["", "index", "search", "demo"])
def test_every_command_has_help(command: str) -> None:
    proc = run(*([command] if command else []), "--help")
    assert "Usage" in proc.stdout
    if command:
        assert "--json" in proc.stdout


def test_index_then_search_print_one_json_document(tmp_path: Path) -> None:
    library = build_library(tmp_path / "lib", n_good=4)
    workspace = str(tmp_path / "ws")

    proc = run("index", str(library.manifest), "--workspace", workspace, "--no-ray", "--json")
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 4
    assert summary["added"] == 4
    assert sorted(Path(q["uri"]).name for q in summary["quarantined"]) == sorted(
        Path(u).name for u in library.bad
    )
    assert all(set(q) >= {"uri", "reason"} for q in summary["quarantined"])

    target = library.good[2]
    proc = run("search", target["paraphrase"], "-k", "2", "--workspace", workspace, "--json")
    hits = json.loads(proc.stdout)
    assert len(hits) == 2
    assert Path(hits[0]["uri"]).name == Path(target["uri"]).name
    assert set(hits[0]) >= {"clip_id", "uri", "start", "end", "caption", "score"}
    # STORY_SEARCH_AUTOSTART=0 (tests/conftest.py): no search service was left behind
    assert not service_starting(Settings(workspace=Path(workspace)))


def _stop_service(settings: Settings) -> None:
    """Stop the workspace's search service, killing it if it never came up."""
    service_call(settings, "/shutdown", {})
    deadline = time.monotonic() + 60
    while service_starting(settings) and time.monotonic() < deadline:
        time.sleep(0.2)
    if service_starting(settings):
        os.kill(int(lock_path(settings).read_text()), signal.SIGKILL)


def test_a_search_starts_the_search_service_for_the_next_one(tmp_path: Path) -> None:
    library = build_library(tmp_path / "lib", n_good=3)
    workspace = tmp_path / "ws"
    run("index", str(library.manifest), "--workspace", str(workspace), "--no-ray", "--json")
    settings = Settings(workspace=workspace)
    search = ("search", library.good[1]["paraphrase"], "-k", "2", "--workspace", str(workspace))
    try:
        first = run(*search, "--autostart", "--json")
        hits = json.loads(first.stdout)
        assert Path(hits[0]["uri"]).name == Path(library.good[1]["uri"]).name
        deadline = time.monotonic() + 300
        while service_call(settings, "/health") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        status = json.loads(
            run("search-service", "status", "--workspace", str(workspace), "--json").stdout
        )
        assert status["rows"] == 3 and status["pid"] != os.getpid()
        served = json.loads(run(*search, "--json").stdout)  # answered by the service
        assert [h["clip_id"] for h in served] == [h["clip_id"] for h in hits]
        assert "started the search service" not in run(*search).stderr
    finally:
        _stop_service(settings)
    assert not service_starting(settings)


def test_search_of_an_empty_library_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("search", "anything", "--workspace", str(tmp_path / "none"), "--json", check=False)
    assert proc.returncode == 2
    assert "story index" in json.loads(proc.stdout)["error"]


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = run("index", str(missing), "--workspace", str(tmp_path), "--json", check=False)
    assert proc.returncode == 2
    assert str(missing) in json.loads(proc.stdout)["error"]
