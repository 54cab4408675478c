"""`story search-service start | stop | status`: the resident search service (warm path).

While it runs, `story search` in any shell is answered by it (models and table already loaded)
instead of loading them again; it serves one library on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, LanceOpt, WorkspaceOpt, make_settings, run_command

search_service_app = typer.Typer(
    help="The resident search service: `story search` answers from it while it runs.",
    no_args_is_help=True,
)
START_TIMEOUT_S = 300.0


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
    from story.tasks.library.search_service import serve, service_call, state_path

    settings = make_settings(workspace, lancedb, worker_idle_s=idle)

    def work() -> dict[str, Any]:
        running = service_call(settings, "/health")
        if running is not None:
            return {"already_running": True, **running}
        if not detach:
            serve(settings)
            return {"stopped": True}
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
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            health = service_call(settings, "/health")
            if health is not None:
                return {"started": True, "log": str(log), **health}
            time.sleep(0.2)
        from story.tasks.errors import StoryError

        raise StoryError(f"the search service did not come up; see {log}")

    result = run_command(as_json, work)
    if result:
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
