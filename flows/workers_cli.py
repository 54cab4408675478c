"""`story workers list | stop`: the warm synthesis workers kept on a Ray cluster."""

from __future__ import annotations

import typer

from story.flows.cli_io import JsonFlag, make_settings, run_command

workers_app = typer.Typer(
    help="Warm synthesis workers: models stay loaded between renders, for worker_idle_s seconds.",
    no_args_is_help=True,
)


@workers_app.command("list")
def workers_list_command(as_json: JsonFlag = False) -> None:
    """Warm workers on the cluster (STORY_RAY_ADDRESS): worker, key, busy, idle seconds."""
    from story.flows.executors.warm_workers import cluster_workers

    report = run_command(as_json, lambda: cluster_workers(make_settings()))
    if report is None:
        return
    if report["address"] is None:
        typer.echo(report["note"])
    for worker in report["workers"]:
        state = "busy" if worker["busy"] else f"idle {worker['idle_s']:.0f}s"
        typer.echo(f"{worker['name']}  {state}  pid {worker.get('pid')}")


@workers_app.command("stop")
def workers_stop_command(as_json: JsonFlag = False) -> None:
    """Stop every warm worker on the cluster now, freeing its CPU / GPU."""
    from story.flows.executors.warm_workers import cluster_workers

    report = run_command(as_json, lambda: cluster_workers(make_settings(), stop=True))
    if report is None:
        return
    if report["address"] is None:
        typer.echo(report["note"])
    typer.echo(f"stopped {len(report['stopped'])} warm workers")
