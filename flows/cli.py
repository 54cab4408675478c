"""The `story` command. --json on every subcommand prints one JSON document on stdout."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from story.tasks.settings import REPO_ROOT, Settings

app = typer.Typer(
    name="story",
    help="Storytelling-video pipeline: clip library, structure, synthesis, stories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SAMPLE_MANIFEST = REPO_ROOT / "datasets" / "sample_library" / "manifest.jsonl"

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


def fail(message: str, as_json: bool, emit: Callable[[Any], None]) -> None:
    """A clear error: JSON on stdout in --json mode, text on stderr otherwise; exit 2."""
    if as_json:
        emit({"error": message})
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def run_command(
    as_json: bool, work: Callable[[], Any], errors: tuple[type[BaseException], ...] = ()
) -> Any:
    """Run a command's work: --json prints its result (or the error) as the one document and
    returns None; otherwise the result comes back for a text report. A StoryError (or one of
    `errors`) becomes a clear message and exit code 2."""
    from story.tasks.errors import StoryError

    with json_stdout(as_json) as emit:
        try:
            result = work()
        except (StoryError, *errors) as exc:
            fail(str(exc), as_json, emit)
        if as_json:
            emit(result)
            return None
    return result


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")
    ] = False,
) -> None:
    """Storytelling-video pipeline."""
    _setup_logging(verbose)


@app.command("index")
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

        return build_index(str(manifest.resolve()), settings.resolved(), use_ray=ray)

    summary = run_command(as_json, work)
    if summary is None:
        return
    typer.echo(
        f"{summary['rows']} rows in '{summary['table']}' (version {summary['table_version']}), "
        f"{summary['added']} added, {len(summary['quarantined'])} quarantined"
    )
    for item in summary["quarantined"]:
        typer.echo(f"  quarantined {item['uri']}: {item['reason']}")


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What the clip should show.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=1000, help="Hits to return.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid | vector | fts")] = "hybrid",
    min_duration: Annotated[float | None, typer.Option(help="Seconds.")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Seconds.")] = None,
    min_aspect: Annotated[float | None, typer.Option(help="Width / height.")] = None,
    max_aspect: Annotated[float | None, typer.Option(help="Width / height.")] = None,
    source: Annotated[str | None, typer.Option(help="Only clips from this source.")] = None,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Hybrid (vector + full-text) search of the clip library."""
    from story.models.text_encoder import load_text_encoder
    from story.tasks.errors import StoryError
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.search import SearchFilters, search

    settings = make_settings(workspace, lancedb)
    filters = SearchFilters(
        min_duration=min_duration,
        max_duration=max_duration,
        min_aspect=min_aspect,
        max_aspect=max_aspect,
        source=source,
    )

    def work() -> list[dict[str, Any]]:
        index = ClipIndex(
            settings.lancedb,
            settings.clips_table,
            storage_options=settings.storage_options or None,
        )
        if index.count() == 0:
            raise StoryError(
                f"{settings.lancedb}: the clip library is empty; run `story index` first"
            )
        encoder = load_text_encoder("minilm", device=settings.device)
        return [h.to_dict() for h in search(index, encoder, query, k=k, filters=filters, mode=mode)]

    hits = run_command(as_json, work, (ValueError,))
    for rank, hit in enumerate(hits or [], 1):
        typer.echo(
            f"{rank:2d}. {hit['score']:.4f}  {hit['clip_id']}  "
            f"[{hit['start']:.2f}-{hit['end']:.2f}s]  {hit['caption']}\n      {hit['uri']}"
        )


@app.command("plots")
def plots_command(
    story_file: Annotated[Path, typer.Argument(help="Story script: YAML, Markdown or plain text.")],
    as_json: JsonFlag = False,
) -> None:
    """Show how a story splits into plots (query and prompt per plot), as editable YAML."""
    from story.tasks.script.parse import plots_command_impl

    result = run_command(as_json, lambda: plots_command_impl(story_file))
    if result is not None:
        typer.echo(result["yaml"])


def synthesis_size(settings: Settings, checkpoint: str = "tiny") -> tuple[int, int]:
    """The frame size the synthesis checkpoint renders at (structure is stored at that size)."""
    from story.tasks.render.render_plot import T2V_PRESETS, checkpoint_config

    folder = Path(settings.checkpoints) / T2V_PRESETS.get(checkpoint, checkpoint)
    if (folder / "model_index.json").is_file():
        config = checkpoint_config(folder)
        return int(config["height"]), int(config["width"])
    return 64, 64


@app.command("depth")
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
    from story.flows.precompute_depth import precompute_depth

    settings = make_settings(workspace, lancedb)
    default_h, default_w = synthesis_size(settings)
    summary = run_command(
        as_json,
        lambda: precompute_depth(
            settings.resolved(),
            query=query,
            top_k=top_k if query else None,
            model=model or settings.depth_model,
            workers=workers,
            use_ray=ray,
            size=(height or default_h, width or default_w),
            normalize=normalize,
        ),
        (FileNotFoundError, ValueError),
    )
    if summary is None:
        return
    typer.echo(
        f"{summary['clips']} clips with {summary['model_id']}: {summary['computed']} computed, "
        f"{summary['cached']} cached, {len(summary['failed'])} failed"
    )
    for item in summary["failed"]:
        typer.echo(f"  failed {item['clip_id']}: {item['reason']}")


@app.command("render")
def render_command(
    story_file: Annotated[Path, typer.Argument(help="Story script: YAML, Markdown or plain text.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Renders folder (default <workspace>/renders).")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Base seed; plots without one derive theirs.")
    ] = 0,
    checkpoint: Annotated[str, typer.Option(help="Synthesis checkpoint name.")] = "tiny",
    candidates: Annotated[
        int, typer.Option(min=1, max=8, help="Clips retrieved and rendered side by side per plot.")
    ] = 1,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
    tau: Annotated[
        int | None, typer.Option(min=0, max=1000, help="Structure only for steps t >= tau.")
    ] = None,
    prompt_frames: Annotated[
        int, typer.Option(min=1, help="Long shots: frames each new clip reuses (M).")
    ] = 2,
    alpha: Annotated[
        float, typer.Option(min=0.0, help="Long shots: weight of reused past noise.")
    ] = 1.0,
    beta: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Long shots: fraction of steps pinning prompt frames."),
    ] = 0.6,
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Render a story into renders/<render_id>/ (flow `render_story`; an unchanged story is
    recognised without one)."""
    from story.flows.render_story import render_story_if_changed

    params: dict[str, Any] = {
        "steps": steps,
        "guidance": guidance,
        "prompt_frames": prompt_frames,
        "alpha": alpha,
        "beta": beta,
    }
    if tau is not None:
        params["tau"] = tau
    settings = make_settings(workspace, lancedb)
    summary = run_command(
        as_json,
        lambda: render_story_if_changed(
            str(story_file),
            settings.resolved(),
            out=str(out) if out else None,
            seed=seed,
            checkpoint=checkpoint,
            candidates=candidates,
            params=params,
            use_ray=ray,
        ),
        (FileNotFoundError,),
    )
    if summary is None:
        return
    state = "up to date, reused" if summary["reused"] else "rendered"
    typer.echo(f"render {summary['render_id']} {state}")
    for key in ("video", "storyboard", "timeline", "manifest"):
        typer.echo(f"  {key:10s} {summary[key]}")


@app.command("shot")
def shot_command(
    query: Annotated[str, typer.Option("--query", "-q", help="What motion/layout to retrieve.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the shot should look like.")],
    tau: Annotated[
        int | None, typer.Option(min=0, max=1000, help="Structure only for steps t >= tau.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Noise seed.")] = 0,
    frames: Annotated[int | None, typer.Option(min=1, max=256, help="Shot length.")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps.")] = 25,
    checkpoint: Annotated[str, typer.Option(help="Synthesis checkpoint name.")] = "tiny",
    out: Annotated[
        Path | None, typer.Option("--out", help="Renders folder (default <workspace>/renders).")
    ] = None,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """One plot end to end: retrieve a clip, take its depth, render the prompt on it."""
    from story.flows.render_story import render_shot

    settings = make_settings(workspace, lancedb)
    result = run_command(
        as_json,
        lambda: render_shot(
            query,
            prompt,
            settings.resolved(),
            out=str(out) if out else None,
            seed=seed,
            tau=tau,
            frames=frames,
            checkpoint=checkpoint,
            params={"steps": steps},
        ),
        (FileNotFoundError,),
    )
    if result is None:
        return
    typer.echo(f"shot on clip {result['clip_id']} ({result['clip_uri']})")
    typer.echo(f"  video     {result['video']}")
    typer.echo(f"  manifest  {result['manifest']}")


@app.command("reproduce")
def reproduce_command(
    render: Annotated[str, typer.Argument(help="Render id (or a unique prefix).")],
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-render from the manifest alone and report whether every frame is identical."""
    from story.flows.reproduce import reproduce_render

    settings = make_settings(workspace, lancedb)
    result = run_command(as_json, lambda: reproduce_render(render, settings.resolved()))
    if result is None:
        return
    verdict = "identical" if result["identical"] else "DIFFERENT"
    typer.echo(f"render {result['render_id']}: {verdict}")
    for plot in result["plots"]:
        typer.echo(f"  plot {plot['index']}: {'identical' if plot['identical'] else 'different'}")
    if not result["identical"]:
        raise typer.Exit(code=1)


@app.command("rerender")
def rerender_command(
    render: Annotated[str, typer.Argument(help="Render id (or a unique prefix).")],
    checkpoint: Annotated[str, typer.Option(help="The new synthesis checkpoint name.")],
    ray: RayFlag = True,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Render the same story, clips and seeds on another checkpoint, with a comparison page."""
    from story.flows.reproduce import rerender

    settings = make_settings(workspace, lancedb)
    result = run_command(
        as_json, lambda: rerender(render, checkpoint, settings.resolved(), use_ray=ray)
    )
    if result is None:
        return
    typer.echo(f"render {result['render_id']} on {checkpoint} (from {result['original']})")
    typer.echo(f"  comparison {result['comparison']}")


@app.command("rerender-affected")
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
    from story.flows.rerender_affected import rerender_affected

    settings = make_settings(workspace, lancedb)
    summary = run_command(
        as_json,
        lambda: rerender_affected(
            asset, checkpoint, settings.resolved(), dry_run=dry_run, use_ray=ray
        ),
    )
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


@app.command("lineage")
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
        if (render is None) == (asset is None):
            raise StoryError("give a RENDER id or --asset ID (one of them)")
        registry = LineageRegistry(make_settings(workspace).workspace)
        if asset is not None:
            return {"asset": asset, "renders": registry.renders_using(asset)}
        return registry.tree(render)

    doc = run_command(as_json, work)
    if doc is not None:
        typer.echo(json.dumps(doc, indent=2, default=str))


def _register_concept_commands() -> None:
    from story.flows.concept_cli import concept_list_command, concept_train_command

    concept = typer.Typer(help="Character concepts: TimeInv token tables + LoRA.")
    concept.command("train")(concept_train_command)
    concept.command("list")(concept_list_command)
    app.add_typer(concept, name="concept")


_register_concept_commands()

workers_app = typer.Typer(
    help="Warm synthesis workers: models stay loaded between renders, for worker_idle_s seconds."
)
app.add_typer(workers_app, name="workers")


@workers_app.command("list")
def workers_list_command(as_json: JsonFlag = False) -> None:
    """Warm workers on the cluster (STORY_RAY_ADDRESS): worker, key, busy, idle seconds."""
    from story.flows.ray_pool import cluster_workers

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
    from story.flows.ray_pool import cluster_workers

    report = run_command(as_json, lambda: cluster_workers(make_settings(), stop=True))
    if report is None:
        return
    if report["address"] is None:
        typer.echo(report["note"])
    typer.echo(f"stopped {len(report['stopped'])} warm workers")


DEMO_QUERIES = (
    "a red ball bouncing on the grass",
    "a box sliding sideways in the snow",
    "people walking outdoors",
)


@app.command("demo")
def demo_command(
    workspace: WorkspaceOpt = None,
    ray: RayFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """The main job on the embedded default: index the sample library, render the example story."""
    from story.flows.demo import run_demo

    settings = make_settings(workspace)
    report = run_command(as_json, lambda: run_demo(settings, DEMO_QUERIES, use_ray=ray))
    if report is not None:
        typer.echo(report["text"])


@app.command("ingest-new")
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
    from story.flows.ingest_new import ingest_new
    from story.tasks.errors import StoryError
    from story.tasks.library.manifest import is_remote
    from story.tasks.object_store import exists

    settings = make_settings(workspace, lancedb)
    folder = drop_folder
    if folder is not None and not is_remote(folder):
        folder = str(Path(folder).expanduser().absolute())

    def work() -> dict[str, Any]:
        if folder is not None and not exists(folder, settings.storage_options):
            raise StoryError(f"drop folder {folder}: no such folder")
        return ingest_new(settings.resolved(), drop_folder=folder, manifest=manifest, use_ray=ray)

    summary = run_command(as_json, work, (FileNotFoundError, ValueError))
    if summary is None:
        return
    typer.echo(
        f"{summary['seen']} items seen, {summary['new']} new: +{summary['added']} rows "
        f"({summary['rows']} in the table, version {summary['table_version']})"
    )
    for item in summary["quarantined"]:
        typer.echo(f"  quarantined {item['uri']}: {item['reason']}")


if __name__ == "__main__":
    app()
