"""The CLI writes its sampling defaults as literals (so `story --help` needs no torch); every
command's default must still be the pipeline's, the one home of those values."""

from __future__ import annotations

from typing import Any

import pytest

from story.models.pipeline import SAMPLING_DEFAULTS
from tests.flows.test_cli_help import ROOT, subcommands


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = subcommands(command)[name]
    return command


RENDER_COMMANDS = [("render",), ("shot",)]
# Options left unset (None) fall through to the pipeline's default; evaluation and concept
# training choose their own step counts on purpose, so only the render commands are pinned.
SAMPLING_OPTIONS = [
    (path, param.name)
    for path in RENDER_COMMANDS
    for param in _command(path).params
    if param.name in SAMPLING_DEFAULTS and param.default is not None
]


def test_the_render_commands_expose_sampling_options() -> None:
    assert {name for _, name in SAMPLING_OPTIONS} >= {"steps", "guidance"}


@pytest.mark.parametrize(("path", "name"), SAMPLING_OPTIONS, ids=lambda v: str(v))
def test_cli_sampling_defaults_are_the_pipelines(path: tuple[str, ...], name: str) -> None:
    param = next(p for p in _command(path).params if p.name == name)
    assert param.default == SAMPLING_DEFAULTS[name], f"story {' '.join(path)} --{name}"
