"""`story eval retrieval` and `story eval search`: retrieval quality and search at scale.

Registered on the `story eval` group (`story.flows.eval_cli`). Both write report.json and
report.html into --out; `--split test` is sealed like every other area (recorded first, refused
on a second run of the same ranking model without --rerun-sealed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.eval_cli import (
    JsonOpt,
    OutOpt,
    RerunOpt,
    SplitOpt,
    WorkspaceOpt,
    _checked_split,
    _echo_report,
    _out_folder,
    _seal,
)


def eval_retrieval_command(
    split: SplitOpt = "validation",
    clips: Annotated[int, typer.Option("--clips", min=20, help="Clips in the library.")] = 1000,
    queries: Annotated[
        int, typer.Option("--queries", min=10, help="Plot queries from the grammar.")
    ] = 500,
    example_story: Annotated[
        bool, typer.Option("--example-story/--no-example-story", help="Score lighthouse.yaml.")
    ] = True,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """p@1 / R@5 on shape + motion + camera: captioned, captionless, paraphrased, real clips."""
    from story.flows.cli_io import make_settings, run_command

    settings = make_settings(workspace)

    def work() -> dict[str, Any]:
        from story.tasks.evaluation.retrieval_report import (
            RetrievalEvalConfig,
            evaluate_retrieval,
            ranking_model_id,
        )

        chosen = _checked_split(split)
        model_id = ranking_model_id(settings)
        folder = _out_folder(out, settings.workspace, "retrieval", chosen, model_id)
        _seal("retrieval", chosen, model_id, rerun_sealed, {"clips": clips, "queries": queries})
        config = RetrievalEvalConfig(chosen, clips, queries, example_story)
        return evaluate_retrieval(
            config, folder, settings, log=lambda line: typer.echo(line, err=True)
        )

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)


def eval_search_command(
    split: SplitOpt = "validation",
    rows: Annotated[int, typer.Option("--rows", min=1000, help="Rows in the table.")] = 1_000_000,
    distinct: Annotated[
        int, typer.Option("--distinct", min=100, help="Distinct captions in the corpus.")
    ] = 100_000,
    queries: Annotated[int, typer.Option("--queries", min=10, help="Plot queries.")] = 200,
    exact_queries: Annotated[
        int,
        typer.Option(
            "--exact-queries",
            min=10,
            help="Queries also searched exactly, the reference (each scans the whole table).",
        ),
    ] = 200,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", help="Where the table is written (deleted after unless --keep)."
        ),
    ] = Path("/tmp/story-eval-search"),
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help=(
                "Keep the table afterwards: a later run with the same --rows, --distinct and "
                "--data-dir reuses it."
            ),
        ),
    ] = False,
    in_memory: Annotated[
        bool,
        typer.Option(
            "--in-memory",
            help=(
                "Search the table held in memory (the search service's path for a large "
                "library: an inverted file of exact vectors, BM25 from posting lists) instead "
                "of through LanceDB; the sweep is over its --nprobes values."
            ),
        ),
    ] = False,
    nprobes: Annotated[
        list[int] | None,
        typer.Option("--nprobes", min=1, help="With --in-memory: probe counts to sweep."),
    ] = None,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search at library scale: scene-level recall@10 vs exact, latency, queries per second."""
    from story.flows.cli_io import make_settings, run_command

    settings = make_settings(workspace)

    def work() -> dict[str, Any]:
        from story.tasks.evaluation.report import Table, write_report
        from story.tasks.evaluation.search_eval import (
            SearchEvalConfig,
            check_data_dir,
            evaluate_search,
        )
        from story.tasks.library.partitioned import FORMAT

        chosen = _checked_split(split)
        check_data_dir(data_dir)  # before a sealed run is recorded
        # The in-memory search is a model of its own per layout (format 3: the vector screen).
        model_id = f"search-{rows}" + (f"-memory-format{FORMAT}" if in_memory else "")
        folder = _out_folder(out, settings.workspace, "search", chosen, model_id)
        _seal(
            "search",
            chosen,
            model_id,
            rerun_sealed,
            {"rows": rows, "queries": queries, "exact_queries": exact_queries},
        )
        config = SearchEvalConfig(
            split=chosen,
            rows=rows,
            distinct=distinct,
            queries=queries,
            exact_queries=exact_queries,
            data_dir=data_dir,
            keep=keep,
            in_memory=in_memory,
        )
        if in_memory:
            config.settings = [(n, None) for n in (nprobes or [8, 16, 32, 64])]
        cache = settings.workspace / "eval" / "search-corpus"
        report = evaluate_search(config, cache, log=lambda line: typer.echo(line, err=True))
        sweep = {
            label: {
                "recall@10": e["recall_at_10"],
                "minus exact": e["minus_exact"],
                "index rows@10": e["index_recall_at_10"],
            }
            | e["hybrid"]
            for label, e in report["sweep"].items()
        }
        sweep["product default"] = {
            "recall@10": report["default"]["recall_at_10"],
            "minus exact": report["default"]["minus_exact"],
            "index rows@10": report["default"]["index_recall_at_10"],
        } | report["default"]["hybrid"]
        sweep["exact"] = {"recall@10": report["exact"]["recall_at_10"]} | report["exact"]["hybrid"]
        table = Table(
            title=f"{rows} rows, {report['distinct_captions']} distinct captions",
            columns=["recall@10", "minus exact", "index rows@10", "p50_ms", "p95_ms"],
            rows=sweep,
            note=(
                "scene-level: share of the top 10 with the query's shape, motion and camera; "
                "index rows@10: share of the exact 10 nearest caption vectors the index finds; "
                f"fastest within 0.02 of exact: {report['fastest_within_tolerance']}"
            ),
        )
        paths = write_report(folder, f"Search at scale ({chosen})", report, [table], [])
        (folder / "search.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        return {**paths, "summary": report}

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)
