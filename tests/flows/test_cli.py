"""The `story` command as a TD scripts it: --help everywhere, one JSON document with --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_search_of_an_empty_library_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("search", "anything", "--workspace", str(tmp_path / "none"), "--json", check=False)
    assert proc.returncode == 2
    assert "story index" in json.loads(proc.stdout)["error"]


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = run("index", str(missing), "--workspace", str(tmp_path), "--json", check=False)
    assert proc.returncode == 2
    assert str(missing) in json.loads(proc.stdout)["error"]
