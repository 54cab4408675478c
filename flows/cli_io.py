"""What every `story` command shares: settings from flags, common options, --json output, errors.

Imports nothing heavy (no torch, Prefect or Ray), so `story --help` stays fast; commands import
their flows when they run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from story.flows.progress import quiet_terminal
from story.tasks.settings import Settings

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", help="Workspace folder (env STORY_WORKSPACE).")
]
LanceOpt = Annotated[
    str | None, typer.Option("--lancedb", help="LanceDB URI (env STORY_LANCEDB_URI).")
]
RayFlag = Annotated[
    bool, typer.Option("--ray/--no-ray", help="Fan out on Ray actors (--no-ray: in-process).")
]


def make_settings(
    workspace: Path | None = None, lancedb: str | None = None, **extra: Any
) -> Settings:
    """Env vars and defaults, overridden by any flag the user gave."""
    overrides = {k: v for k, v in extra.items() if v is not None}
    if workspace is not None:
        overrides["workspace"] = workspace
    if lancedb is not None:
        overrides["lancedb_uri"] = lancedb
    return Settings(**overrides)


def setup_logging(verbose: bool) -> None:
    """Logs go to stderr (INFO with --verbose), so stdout stays one JSON document."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[Callable[[Any], None]]:
    """In --json mode send everything written to fd 1 (libraries too) to stderr; emit one doc."""
    if not enabled:
        yield lambda doc: None
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real_stdout = os.fdopen(saved, "w")

    def emit(doc: Any) -> None:
        real_stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        real_stdout.flush()

    try:
        yield emit
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        real_stdout.close()


def fail(message: str, as_json: bool, emit: Callable[[Any], None]) -> NoReturn:
    """A clear error: JSON on stdout in --json mode, text on stderr otherwise; exit 2."""
    if as_json:
        emit({"error": message})
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def run_command(
    as_json: bool, work: Callable[[], T], errors: tuple[type[BaseException], ...] = ()
) -> T | None:
    """Run a command's work: --json prints its result (or the error) as the one document and
    returns None; otherwise the result comes back for a text report. A StoryError (or one of
    `errors`) becomes a clear message and exit code 2."""
    from story.tasks.errors import StoryError

    handled: tuple[type[BaseException], ...] = (StoryError, *errors)
    with json_stdout(as_json) as emit, quiet_terminal(as_json):
        try:
            result = work()
        except handled as exc:
            fail(str(exc), as_json, emit)
        if as_json:
            emit(result)
            return None
    return result
