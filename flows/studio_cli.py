"""`story studio up | down | status | deploy`: the Prefect server, worker and Ray head of a studio.

Ports and the Prefect database come from settings (STORY_STUDIO_API_PORT, STORY_STUDIO_RAY_PORT,
STORY_STUDIO_DATABASE_URL) or the flags below; state, pid files and logs live in
<workspace>/studio/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, WorkspaceOpt, make_settings, run_command

studio_app = typer.Typer(
    help="A studio on this machine: Prefect server + work pool + worker + Ray head, on 127.0.0.1.",
    no_args_is_help=True,
)

ApiPortOpt = Annotated[
    int | None, typer.Option("--api-port", help="Prefect API/UI port (env STORY_STUDIO_API_PORT).")
]
RayPortOpt = Annotated[
    int | None, typer.Option("--ray-port", help="Ray head port (env STORY_STUDIO_RAY_PORT).")
]
PrefectFileOpt = Annotated[
    Path | None,
    typer.Option("--prefect-file", help="Deployments file (infra/prefect/prefect.yaml)."),
]
SchedulesFlag = Annotated[
    bool,
    typer.Option(
        "--schedules/--no-schedules",
        help="Activate the file's schedules (off by default: they name the studio's buckets).",
    ),
]


def _settings(workspace: Path | None, api_port: int | None, ray_port: int | None) -> Any:
    return make_settings(workspace, studio_api_port=api_port, studio_ray_port=ray_port)


def _print_status(report: dict[str, Any]) -> None:
    typer.echo(f"studio {report['studio']}: {'up' if report['up'] else 'DOWN'}")
    for name, part in report["parts"].items():
        state = "running" if part["running"] else "stopped"
        answer = "answering" if part["answering"] else "not answering"
        where = part.get("ui") or part.get("address") or f"pool {part.get('pool')}"
        typer.echo(f"  {name:7s} {state:8s} {answer:14s} pid {part['pid']}  {where}")


@studio_app.command("up")
def up_command(
    workspace: WorkspaceOpt = None,
    api_port: ApiPortOpt = None,
    ray_port: RayPortOpt = None,
    prefect_file: PrefectFileOpt = None,
    schedules: SchedulesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Start the Ray head, the Prefect server, the work pool and its worker; deploy the flows."""
    from story.flows.studio.control import up
    from story.flows.studio.deploy import PREFECT_FILE

    settings = _settings(workspace, api_port, ray_port)
    report = run_command(
        as_json,
        lambda: up(
            settings, prefect_file=prefect_file or PREFECT_FILE, activate_schedules=schedules
        ),
        (FileNotFoundError, ValueError),
    )
    if report is None:
        return
    _print_status(report)
    for row in report["deployments"]:
        typer.echo(f"  deployed {row['deployment']} -> {row['work_pool']}/{row['work_queue']}")
    typer.echo(f"UI: {report['parts']['server']['ui']}   logs: {report['logs']}")


@studio_app.command("deploy")
def deploy_command(
    workspace: WorkspaceOpt = None,
    prefect_file: PrefectFileOpt = None,
    schedules: SchedulesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Register (again) the deployments of the deployments file on the running studio."""
    from story.flows.studio.client import studio_client
    from story.flows.studio.deploy import PREFECT_FILE, register_deployments
    from story.flows.studio.layout import StudioLayout
    from story.flows.studio.zombies import ensure_zombie_automation

    layout = StudioLayout.load(make_settings(workspace))

    def work() -> list[dict[str, Any]]:
        with studio_client(layout) as client:
            rows = register_deployments(
                client, prefect_file or PREFECT_FILE, activate_schedules=schedules
            )
            ensure_zombie_automation(client)
            return rows

    rows = run_command(as_json, work, (FileNotFoundError, ValueError))
    for row in rows or ():
        typer.echo(f"deployed {row['deployment']} -> {row['work_pool']}/{row['work_queue']}")


@studio_app.command("status")
def status_command(workspace: WorkspaceOpt = None, as_json: JsonFlag = False) -> None:
    """Each part of the studio: running, answering, pid and address. Exit 1 when not all up."""
    from story.flows.studio.control import status

    report = run_command(as_json, lambda: status(make_settings(workspace)))
    if report is None:
        return
    _print_status(report)
    if not report["up"]:
        raise typer.Exit(code=1)


@studio_app.command("down")
def down_command(workspace: WorkspaceOpt = None, as_json: JsonFlag = False) -> None:
    """Stop the worker, the server and the Ray head, leaving no process of the studio behind."""
    from story.flows.studio.control import down

    report = run_command(as_json, lambda: down(make_settings(workspace)))
    if report is None:
        return
    typer.echo(f"stopped: {', '.join(report['stopped']) or 'nothing was running'}")
    if report["left"]:
        typer.echo(f"still running: {report['left']}", err=True)
        raise typer.Exit(code=1)
