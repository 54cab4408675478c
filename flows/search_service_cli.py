"""`story search-service start | stop | status`: the resident search service (warm path).

While it runs, `story search` in any shell is answered by it (models and table already loaded)
instead of loading them again; it serves one library on 127.0.0.1 only. A `story search` that
finds none answers in-process and starts one in the background (`spawn_service`), as dmypy or
the gradle daemon do, unless STORY_SEARCH_AUTOSTART=0 or --no-autostart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, LanceOpt, WorkspaceOpt, make_settings, run_command

search_service_app = typer.Typer(
    help="The resident search service: `story search` answers from it while it runs.",
    no_args_is_help=True,
)
START_TIMEOUT_S = 300.0
AUTOSTART_ENV = "STORY_SEARCH_AUTOSTART"


def autostart_wanted(flag: bool | None) -> bool:
    """--autostart / --no-autostart if given, else STORY_SEARCH_AUTOSTART (default on)."""
    if flag is not None:
        return flag
    return os.environ.get(AUTOSTART_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def spawn_service(settings: Any, idle: float | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `story search-service start` for these settings in its own session (it outlives
    this process; output to <workspace>/search_service.log) and return at once."""
    from story.tasks.library.search_service import state_path

    command = [sys.executable, "-m", "story.flows.cli", "search-service", "start"]
    command += ["--workspace", str(settings.workspace), "--lancedb", settings.lancedb]
    if idle is not None:
        command += ["--idle", str(idle)]
    log = state_path(settings).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return process, log


@search_service_app.command("start")
def start_command(
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background and return once it answers.")
    ] = False,
    idle: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many idle seconds (0: never).")
    ] = None,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Load the library and its query encoders once and answer searches on 127.0.0.1."""
    from story.tasks.library.search_service import (
        serve,
        service_call,
        service_starting,
        state_path,
    )

    settings = make_settings(workspace, lancedb, worker_idle_s=idle)

    def work() -> dict[str, Any]:
        running = service_call(settings, "/health")
        if running is not None:
            return {"already_running": True, **running}
        if not detach:
            serve(settings)
            return {"stopped": True}
        log = state_path(settings).with_suffix(".log")
        if service_starting(settings):  # e.g. started by a `story search` moments ago
            started, alive = False, lambda: service_starting(settings)
        else:
            process, log = spawn_service(settings, idle)
            started, alive = True, lambda: process.poll() is None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and alive():
            health = service_call(settings, "/health")
            if health is not None:
                return {"started": started, "log": str(log), **health}
            time.sleep(0.2)
        from story.tasks.errors import StoryError

        raise StoryError(f"the search service did not come up; see {log}")

    result = run_command(as_json, work)
    if result and result.get("stopped"):
        typer.echo("search service stopped")
    elif result:
        typer.echo(f"search service pid {result.get('pid')} serving {result.get('lancedb_uri')}")


@search_service_app.command("stop")
def stop_command(
    workspace: WorkspaceOpt = None, lancedb: LanceOpt = None, as_json: JsonFlag = False
) -> None:
    """Stop the search service of this library."""
    from story.tasks.library.search_service import service_call

    settings = make_settings(workspace, lancedb)
    result = run_command(as_json, lambda: service_call(settings, "/shutdown", {}) or {})
    if result is not None:
        typer.echo(f"stopped {result['stopping']}" if result else "no search service running")


@search_service_app.command("status")
def status_command(
    workspace: WorkspaceOpt = None, lancedb: LanceOpt = None, as_json: JsonFlag = False
) -> None:
    """What the running search service serves (rows, table version, encoders)."""
    from story.tasks.library.search_service import service_call

    settings = make_settings(workspace, lancedb)
    result = run_command(as_json, lambda: service_call(settings, "/health") or {"running": False})
    if result is not None:
        typer.echo(result)
