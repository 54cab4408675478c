"""`story index | ingest-new | search | depth | library-export | library-restore`: the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, LanceOpt, RayFlag, WorkspaceOpt, make_settings, run_command
from story.tasks.settings import REPO_ROOT

SAMPLE_MANIFEST = REPO_ROOT / "datasets" / "sample_library" / "manifest.jsonl"

library_app = typer.Typer()


@library_app.command("index")
def index_command(
    manifest: Annotated[
        Path, typer.Argument(help="Clip manifest (JSONL, CSV or parquet).")
    ] = SAMPLE_MANIFEST,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    shard_size: Annotated[int | None, typer.Option(help="Manifest rows per shard.")] = None,
    ivf_pq_min_rows: Annotated[
        int | None, typer.Option(help="Build an IVF-PQ index from this many rows.")
    ] = None,
    ray: RayFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """Ingest a clip manifest into the clip library (flow `build_index`)."""
    from story.tasks.errors import StoryError

    settings = make_settings(
        workspace, lancedb, shard_size=shard_size, ivf_pq_min_rows=ivf_pq_min_rows
    )

    def work() -> dict[str, Any]:
        if not manifest.exists():
            raise StoryError(f"{manifest}: manifest not found")
        from story.flows.build_index import build_index

        return build_index(str(manifest.resolve()), settings, use_ray=ray)

    summary = run_command(as_json, work)
    if summary is None:
        return
    typer.echo(
        f"{summary['rows']} rows in '{summary['table']}' (version {summary['table_version']}), "
        f"{summary['added']} added, {len(summary['quarantined'])} quarantined"
    )
    for item in summary["quarantined"]:
        typer.echo(f"  quarantined {item['uri']}: {item['reason']}")


@library_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What the clip should show.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=1000, help="Hits to return.")] = 5,
    candidates: Annotated[
        int | None,
        typer.Option("--candidates", min=1, max=1000, help="N distinct clips (sets -k)."),
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid | vector | fts")] = "hybrid",
    min_duration: Annotated[float | None, typer.Option(help="Seconds.")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Seconds.")] = None,
    min_aspect: Annotated[float | None, typer.Option(help="Width / height.")] = None,
    max_aspect: Annotated[float | None, typer.Option(help="Width / height.")] = None,
    source: Annotated[str | None, typer.Option(help="Only clips from this source.")] = None,
    diversity: Annotated[
        str, typer.Option(help="source: one hit per source file | shot | off.")
    ] = "source",
    rerank: Annotated[
        bool, typer.Option("--rerank/--no-rerank", help="Motion-aware re-ranking.")
    ] = True,
    autostart: Annotated[
        bool | None,
        typer.Option(
            "--autostart/--no-autostart",
            help="With no search service up, start one in the background for later searches "
            "(env STORY_SEARCH_AUTOSTART, default on).",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Search the clip library by what clips show and say (the search service answers if up;
    if not, this search starts it in the background)."""
    from story.flows.search_service_cli import autostart_wanted, spawn_service
    from story.tasks.library.filters import SearchFilters
    from story.tasks.library.search_service import run_search, service_starting

    settings = make_settings(workspace, lancedb)
    filters = SearchFilters(
        min_duration=min_duration,
        max_duration=max_duration,
        min_aspect=min_aspect,
        max_aspect=max_aspect,
        source=source,
    )

    def work() -> list[dict[str, Any]]:
        found = run_search(
            settings,
            query,
            k=candidates or k,
            filters=filters,
            mode=mode,
            rerank=rerank,
            diversity=diversity,
        )
        if (
            found["served_by"] != "service"
            and autostart_wanted(autostart)
            and not service_starting(settings)
        ):
            process, log = spawn_service(settings)
            if not as_json:
                typer.echo(
                    f"started the search service in the background (pid {process.pid}, log "
                    f"{log}): later searches use it; `story search-service stop` stops it",
                    err=True,
                )
        return found["hits"]

    hits = run_command(as_json, work, (ValueError,))
    for rank, hit in enumerate(hits or [], 1):
        shows = f"  [{hit['motion']}, camera {hit['camera']}]" if hit.get("motion") else ""
        typer.echo(
            f"{rank:2d}. {hit['score']:.4f}  {hit['clip_id']}  "
            f"[{hit['start']:.2f}-{hit['end']:.2f}s]{shows}  {hit['caption']}\n      {hit['uri']}"
        )


@library_app.command("depth")
def depth_command(
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Only the top-k clips for this text.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Clips for --query.")] = 5,
    model: Annotated[
        str | None,
        typer.Option(
            help="tiny | a local DPT or tiny folder | edges | motion (env STORY_DEPTH_MODEL)."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Synthesis checkpoint whose frame size the maps are stored at (default the "
            "settings', STORY_CHECKPOINT)."
        ),
    ] = None,
    height: Annotated[
        int | None, typer.Option(min=1, help="Output height (default: the synthesis size).")
    ] = None,
    width: Annotated[
        int | None, typer.Option(min=1, help="Output width (default: the synthesis size).")
    ] = None,
    normalize: Annotated[str, typer.Option(help="frame | clip (clip does not flicker).")] = "frame",
    workers: Annotated[int | None, typer.Option(min=1, help="Actors (default: settings).")] = None,
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Precompute per-frame depth (or edges / motion) for the library (flow `precompute_depth`)."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.flows.precompute_depth import precompute_depth, synthesis_size

        size = None
        if height is not None or width is not None:
            default_h, default_w = synthesis_size(settings, checkpoint)
            size = (height or default_h, width or default_w)
        return precompute_depth(
            settings,
            query=query,
            top_k=top_k if query else None,
            model=model or settings.depth_model,
            workers=workers,
            use_ray=ray,
            size=size,
            normalize=normalize,
            checkpoint=checkpoint,
        )

    summary = run_command(as_json, work, (FileNotFoundError, ValueError))
    if summary is None:
        return
    typer.echo(
        f"{summary['clips']} clips with {summary['model_id']}: {summary['computed']} computed, "
        f"{summary['cached']} cached, {len(summary['failed'])} failed"
    )
    for item in summary["failed"]:
        typer.echo(f"  failed {item['clip_id']}: {item['reason']}")


@library_app.command("ingest-new")
def ingest_new_command(
    drop_folder: Annotated[
        str | None,
        typer.Option("--drop-folder", "-d", help="Folder (local or s3://...) of new video files."),
    ] = None,
    manifest: Annotated[
        str | None, typer.Option("--manifest", "-m", help="A manifest that may have new rows.")
    ] = None,
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Index only new clips from a drop folder and/or an appended manifest (flow `ingest_new`)."""
    from story.tasks.errors import StoryError
    from story.tasks.object_store import exists, is_remote

    settings = make_settings(workspace, lancedb)
    folder = drop_folder
    if folder is not None and not is_remote(folder):
        folder = str(Path(folder).expanduser().absolute())

    def work() -> dict[str, Any]:
        from story.flows.ingest_new import ingest_new

        if folder is not None and not exists(folder, settings.storage_options):
            raise StoryError(f"drop folder {folder}: no such folder")
        return ingest_new(settings, drop_folder=folder, manifest=manifest, use_ray=ray)

    summary = run_command(as_json, work, (FileNotFoundError, ValueError))
    if summary is None:
        return
    typer.echo(
        f"{summary['seen']} items seen, {summary['new']} new: +{summary['added']} rows "
        f"({summary['rows']} in the table, version {summary['table_version']})"
    )
    for item in summary["quarantined"]:
        typer.echo(f"  quarantined {item['uri']}: {item['reason']}")


@library_app.command("library-export")
def library_export_command(
    out: Annotated[Path, typer.Argument(help="The export to write (a .parquet file).")],
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the clip table as one canonical parquet file (sorted, byte-reproducible) for DVC."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.tasks.library.canonical import export_table

        return export_table(settings.lancedb, out, settings.clips_table)

    summary = run_command(as_json, work)
    if summary is not None:
        typer.echo(f"{summary['rows']} rows -> {summary['export']} (sha256 {summary['sha256']})")


@library_app.command("library-restore")
def library_restore_command(
    export: Annotated[Path, typer.Argument(help="A canonical export (.parquet).")],
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a LanceDB clip table from a canonical export (readers of an export do this alone)."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.tasks.library.canonical import reject_export, restore_table

        reject_export(settings.lancedb_uri, "restore")
        return restore_table(
            export, settings.lancedb, settings.clips_table, settings.ivf_pq_min_rows
        )

    summary = run_command(as_json, work)
    if summary is not None:
        typer.echo(f"{summary['rows']} rows restored into {summary['lancedb_uri']}")
