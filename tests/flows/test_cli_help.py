"""`--help` for every `story` command and sub-command, found by walking the Typer app, and a
`story --help` that imports no heavy library."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from story.flows.cli import app

HEAVY = ("torch", "prefect", "ray", "lancedb", "diffusers", "transformers")


ROOT = typer.main.get_command(app)
CONTEXT = ROOT.context_class(ROOT)  # typer bundles its own click: use the command's own classes


def subcommands(command: Any) -> dict[str, Any]:
    """A group's sub-commands by name (none for a leaf command)."""
    if not hasattr(command, "list_commands"):
        return {}
    found = {name: command.get_command(CONTEXT, name) for name in command.list_commands(CONTEXT)}
    return {name: sub for name, sub in found.items() if sub is not None}


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path below `command` (groups and leaves), `command` itself first."""
    paths = [path]
    for name, sub in sorted(subcommands(command).items()):
        paths += command_paths(sub, (*path, name))
    return paths


PATHS = command_paths(ROOT)


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = subcommands(command)[name]
    return command


def test_the_walk_finds_the_documented_commands() -> None:
    names = {" ".join(p) for p in PATHS}
    for documented in (
        "index",
        "ingest-new",
        "search",
        "depth",
        "plots",
        "shot",
        "render",
        "lineage",
        "reproduce",
        "rerender",
        "rerender-affected",
        "concept train",
        "concept list",
        "workers list",
        "workers stop",
        "demo",
    ):
        assert documented in names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "story")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    command = _command(path)
    if command.help or path:
        assert (command.help or "").split("\n")[0][:30] in " ".join(result.output.split())
    if not subcommands(command):
        assert "--json" in result.output, f"story {' '.join(path)} has no --json"


def test_story_help_imports_no_heavy_library() -> None:
    probe = (
        "import sys; from typer.testing import CliRunner; from story.flows.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


@pytest.mark.parametrize("command", [["render", "story.yaml"], ["shot", "--prompt", "a cube"]])
def test_both_noise_knobs_are_refused_before_any_work(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--noise-share", "0.5", "--noise-warp", "0.5"])
    assert result.exit_code == 2
    assert "use one of them" in result.output and "--noise-warp" in result.output
