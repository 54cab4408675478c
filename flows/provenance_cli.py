"""`story lineage | reproduce | rerender | rerender-affected`: what a render used, and again."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, LanceOpt, RayFlag, WorkspaceOpt, make_settings, run_command

provenance_app = typer.Typer()

RenderArg = Annotated[str, typer.Argument(help="Render id (or a unique prefix).")]


@provenance_app.command("reproduce")
def reproduce_command(
    render: RenderArg,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-render from the manifest alone and report whether every frame is identical."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.flows.reproduce import reproduce_render

        return reproduce_render(render, settings)

    result = run_command(as_json, work)
    if result is None:
        return
    verdict = "identical" if result["identical"] else "DIFFERENT"
    typer.echo(f"render {result['render_id']}: {verdict}")
    for plot in result["plots"]:
        typer.echo(f"  plot {plot['index']}: {'identical' if plot['identical'] else 'different'}")
    if not result["identical"]:
        raise typer.Exit(code=1)


@provenance_app.command("rerender")
def rerender_command(
    render: RenderArg,
    checkpoint: Annotated[str, typer.Option(help="The new synthesis checkpoint name.")],
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Render the same story, clips and seeds on another checkpoint, with a comparison page."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.flows.rerender import rerender

        return rerender(render, checkpoint, settings, use_ray=ray)

    result = run_command(as_json, work)
    if result is None:
        return
    typer.echo(f"render {result['render_id']} on {checkpoint} (from {result['original']})")
    typer.echo(f"  comparison {result['comparison']}")


@provenance_app.command("rerender-affected")
def rerender_affected_command(
    asset: Annotated[
        str, typer.Option("--asset", help="The old checkpoint or concept pack: id, name or prefix.")
    ],
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="The new synthesis checkpoint name (default: each render's own checkpoint, "
            "as it resolves now: for a new concept pack version)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the affected renders.")
    ] = False,
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-render every render that used an asset on the new version (flow `rerender_affected`)."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.flows.rerender_affected import rerender_affected

        return rerender_affected(asset, checkpoint, settings, dry_run=dry_run, use_ray=ray)

    summary = run_command(as_json, work)
    if summary is None:
        return
    if not summary["renders"]:
        typer.echo(f"no render used {asset}")
    for entry in summary["renders"]:
        line = f"{entry['render_id']}  {entry['status']}"
        if entry.get("new_render"):
            line += f" -> {entry['new_render']}"
        if entry.get("reason"):
            line += f": {entry['reason']}"
        typer.echo(line)


@provenance_app.command("lineage")
def lineage_command(
    render: Annotated[str | None, typer.Argument(help="Render id (or a unique prefix).")] = None,
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="Clip, checkpoint or concept id/name: renders that used it."),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """A render's lineage tree, or every render that used an asset."""
    from story.tasks.errors import StoryError
    from story.tasks.provenance.lineage import LineageRegistry

    def work() -> dict[str, Any]:
        registry = LineageRegistry(make_settings(workspace).workspace)
        if asset is not None and render is None:
            return {"asset": asset, "renders": registry.renders_using(asset)}
        if render is not None and asset is None:
            return registry.tree(render)
        raise StoryError("give a RENDER id or --asset ID (one of them)")

    doc = run_command(as_json, work)
    if doc is not None:
        typer.echo(json.dumps(doc, indent=2, default=str))
