"""Search benchmarks: the product's search at library scale, and interactive `story search`.

    python -m bench.bench_search scale [--rows 1000000 --split validation]
    python -m bench.bench_search interactive --lancedb DIR [--runs 5]
    python -m bench.bench_search rows --lancedb DIR   # a table kept by story eval search --keep
    python -m bench.bench_search slots --lancedb DIR  # the slot lists' refine factor
    python -m bench.bench_search clients --lancedb DIR  # concurrent clients, LanceDB vs memory

`scale` runs `story.tasks.evaluation.search_eval` (the distinct-caption corpus, scene-level
recall@10 against exact search, the (nprobes, refine) sweep with row-level index recall,
`search()` p50 / p95 for vector and hybrid,
queries per second with 1 / 4 / 16 concurrent clients) and writes
bench/results/search.json (search_10m.json for 10M rows: run that one late, with nice -n 19).

`interactive` times `story search` as a TD meets it: from a new process with no search service
running (cold: process start, imports, loading the library and the query encoders, one query,
autostart off), first with no search snapshot of the library anywhere (through LanceDB), then
with the snapshot `story index` and the service write beside the library
(`story.tasks.library.snapshot`), then the same from workspaces never used before (a colleague
searching a library someone else indexed); then the daemon
pattern (a first `story search` that answers in-process and
starts the service in the background, the seconds until the service answers, and the searches
after it), then with the resident service up (the service's own time per query, and the whole
command). `rows` times how a search reads its candidates' columns (once for the union of the
lists, against once per list), interleaved in one process; `slots` times the slot lists' refine
factor (`search.SLOT_REFINE`) the same way and counts the hit lists that stay the same.
The service is timed on the five QUERIES repeated (a TD refining one search; their vectors are
remembered) and on NOVEL queries it has never seen (each one embedded). Each run reports wall and
CPU seconds and the load average, because on a shared machine wall time says more about the
neighbours than about the code.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = (
    "a ball slides to the left on the grass",
    "cube coming towards the camera on the sand",
    "a drum hopping in place in the snow, locked-off shot",
    "cone going round and round at sunset while the camera pushes in",
    "people walking outdoors",
)
NOVEL = tuple(
    f"a {colour} {shape} {motion} on the {ground}"
    for colour, shape, motion, ground in zip(
        ("red", "blue", "green", "yellow", "purple") * 10,
        ("ball", "cube", "cone", "drum", "cylinder", "block", "sphere") * 8,
        ("slides to the left", "bounces", "circles", "comes towards us", "moves away") * 10,
        ("grass", "sand", "snow") * 17,
        strict=False,
    )
)


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of one command run to completion."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    return {
        "wall_s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(_child_cpu() - cpu0, 3),
        "load1": round(os.getloadavg()[0], 2),
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        key: {
            "median": round(statistics.median(r[key] for r in runs), 3),
            "min": round(min(r[key] for r in runs), 3),
        }
        for key in ("wall_s", "cpu_s")
    } | {"runs": runs}


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(statistics.quantiles(values, n=20)[-1], 2),
        "max": round(max(values), 2),
    }


def _service_timings(settings: Any, queries: list[str]) -> dict[str, Any]:
    """The service's own wall and CPU ms per query, and the client's round trip (kept-alive
    connection), each query asked once."""
    from story.tasks.library.search_service import service_call

    load = round(os.getloadavg()[0], 2)
    service, cpu, round_trip = [], [], []
    for query in queries:
        t0 = time.perf_counter()
        answer = service_call(settings, "/search", {"query": query, "k": 5})
        round_trip.append(1000 * (time.perf_counter() - t0))
        service.append(answer["ms"])
        cpu.append(answer["cpu_ms"])
    return {
        "queries": len(queries),
        "distinct": len(set(queries)),
        "service": _ms(service),
        "service_cpu": _ms(cpu),
        "round_trip": _ms(round_trip),
        "load1": [load, round(os.getloadavg()[0], 2)],
    }


def _autostart(story: str, base: list[str], settings: Any, env: dict[str, str], runs: int) -> dict:
    """A first `story search` that starts the service, the wait until it answers, the next
    searches (which it answers); the service is stopped afterwards."""
    from story.tasks.library.search_service import service_call, service_starting

    command = [story, "search", QUERIES[0], "-k", "5", *base, "--autostart"]
    first = timed_command(command, env)
    t0 = time.perf_counter()
    while service_call(settings, "/health") is None and time.perf_counter() - t0 < 600:
        time.sleep(0.1)
    ready_s = round(time.perf_counter() - t0, 3)
    try:
        after = [
            timed_command([story, "search", QUERIES[i % len(QUERIES)], "-k", "5", *base], env)
            for i in range(1, runs + 1)
        ]
    finally:
        service_call(settings, "/shutdown", {})
        while service_starting(settings):
            time.sleep(0.1)
    return {"first_search": first, "service_answers_after_s": ready_s, "next": _summary(after)}


def interactive(lancedb: str, workspace: Path, runs: int) -> dict[str, Any]:
    """Cold and warm `story search` on one library."""
    from story.tasks.library.search_service import service_call
    from story.tasks.settings import Settings

    story = str(Path(sys.executable).with_name("story"))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STORY_SEARCH_AUTOSTART": "0"}
    base = ["--lancedb", lancedb, "--workspace", str(workspace)]
    settings = Settings(lancedb_uri=lancedb, workspace=workspace)
    if service_call(settings, "/health") is not None:
        service_call(settings, "/shutdown", {})
        time.sleep(1)
    import shutil

    from story.tasks.library import snapshot
    from story.tasks.library.searcher import LibrarySearcher

    snapshots = snapshot.homes(workspace, lancedb, settings.clips_table)

    def cold_runs(fresh: bool, other_workspace: bool = False) -> list[dict[str, float]]:
        """`fresh`: each search meets a library with no snapshot anywhere (the search writes
        one, which is removed before the next); `other_workspace`: each search comes from a
        workspace never used before, the library's snapshot beside it."""
        timed = []
        for i in range(runs):
            if fresh:
                for folder in snapshots:
                    shutil.rmtree(folder, ignore_errors=True)
            searcher = workspace / f"bench-new-workspace-{i}" if other_workspace else workspace
            query = QUERIES[i % len(QUERIES)]
            where = ["--lancedb", lancedb, "--workspace", str(searcher)]
            timed.append(timed_command([story, "search", query, "-k", "5", *where], env))
            if other_workspace:
                shutil.rmtree(searcher, ignore_errors=True)
        return timed

    cold = cold_runs(fresh=True)
    # What `story index`, the service or that first search leaves behind: the snapshot.
    LibrarySearcher.from_settings(settings, resident=True, snapshots=True)
    if snapshot.read(workspace, lancedb, settings.clips_table) is None:
        raise SystemExit(f"{lancedb}: no search snapshot was written")
    cold_snapshot = cold_runs(fresh=False)
    cold_new_workspace = cold_runs(fresh=False, other_workspace=True)
    autostart = _autostart(story, base, settings, env, runs)
    start = subprocess.run(
        [story, "search-service", "start", "--detach", "--idle", "0", *base, "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    service = json.loads(start.stdout)
    try:
        repeated = _service_timings(settings, [QUERIES[i % len(QUERIES)] for i in range(10 * runs)])
        novel = _service_timings(settings, list(NOVEL[: 10 * runs]))
        warm_cli = [
            timed_command([story, "search", QUERIES[i % len(QUERIES)], "-k", "5", *base], env)
            for i in range(runs)
        ]
    finally:
        service_call(settings, "/shutdown", {})
    return {
        "library": service.get("rows"),
        "encoders": service.get("encoders"),
        "cold_story_search": _summary(cold),
        "cold_story_search_snapshot": _summary(cold_snapshot),
        "cold_story_search_new_workspace": _summary(cold_new_workspace),
        "autostart": autostart,
        "service_search_ms": repeated["service"],
        "service_round_trip_ms": repeated["round_trip"],
        "service_novel_queries": novel,
        "warm_story_search_command": _summary(warm_cli),
        "targets": {"cold_wall_s": 2.0, "warm_ms": 50.0},
    }


def _setting(text: str) -> tuple[int, int | None]:
    nprobes, colon, refine = text.partition(":")
    if not colon or not nprobes.isdigit() or not (refine == "none" or refine.isdigit()):
        raise SystemExit(f"--settings {text!r}: write nprobes:refine, e.g. 20:20 or 10:none")
    return int(nprobes), None if refine == "none" else int(refine)


def _validation_searcher(lancedb: str, queries: int) -> tuple[Any, Any, list[Any], list[Any]]:
    """A kept table's index and searcher (NumPy MiniLM), `queries` validation plot queries and
    their vectors: what the interleaved `rows` and `slots` comparisons search with."""
    from story.models.numpy_text import NumpyMiniLM
    from story.tasks.evaluation.retrieval_queries import grammar_queries
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.searcher import LibrarySearcher, QueryEncoders

    index = ClipIndex(lancedb, "clips", text_dim=384)
    searcher = LibrarySearcher(index, QueryEncoders(NumpyMiniLM(), None))
    cases = grammar_queries("validation", queries)
    return index, searcher, cases, searcher.embed([c.query for c in cases])


def _timed_searches(
    searcher: Any, cases: list[Any], vectors: list[Any], ms: list[float]
) -> list[list[str]]:
    """One pass of the product's search (top 10, diversity off) over the cases, each query's
    milliseconds appended to `ms`; the hit ids of every query."""
    found = []
    for case, vector in zip(cases, vectors, strict=True):
        t0 = time.perf_counter()
        result = searcher.search(case.query, k=10, vectors=vector, diversity="off")
        ms.append(1000 * (time.perf_counter() - t0))
        found.append([h.clip_id for h in result])
    return found


def row_reads(lancedb: str, queries: int, rounds: int) -> dict[str, Any]:
    """`search()` with each list reading its own rows' columns on its own thread (as before
    2026-12-04, when each list selected them) against light lists whose union is read once by
    row id (`search._filled`), interleaved in one process on the same queries, hybrid search
    with the product's defaults; the hits must be the same."""
    from story.tasks.library import search as product

    index, searcher, cases, vectors = _validation_searcher(lancedb, queries)
    light_vector, light_fts = product._vector_rows, product._fts_rows

    def per_list(light):
        def rows(plan, *args):
            found = light(plan, *args)
            return product._filled({"list": found}, plan)["list"]

        return rows

    timings: dict[str, list[float]] = {"columns per list": [], "light lists, one read": []}
    hits: dict[str, list[list[str]]] = {name: [] for name in timings}
    for _ in range(rounds):
        for name in timings:
            if name == "columns per list":
                product._vector_rows, product._fts_rows = (
                    per_list(light_vector),
                    per_list(light_fts),
                )
            else:
                product._vector_rows, product._fts_rows = light_vector, light_fts
            hits[name] = _timed_searches(searcher, cases, vectors, timings[name])
    product._vector_rows, product._fts_rows = light_vector, light_fts
    p50 = {name: round(statistics.median(ms), 2) for name, ms in timings.items()}
    return {
        "table": lancedb,
        "rows": index.count(),
        "queries": queries,
        "rounds": rounds,
        "p50_ms": p50,
        "p95_ms": {
            name: round(sorted(ms)[int(0.95 * (len(ms) - 1))], 2) for name, ms in timings.items()
        },
        "ratio_light_to_per_list": round(p50["light lists, one read"] / p50["columns per list"], 3),
        "same_hits": hits["columns per list"] == hits["light lists, one read"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def slot_refine(lancedb: str, queries: int, rounds: int, values: tuple[int, ...]) -> dict[str, Any]:
    """`search()` with the slot lists' refine factor at each of `values` (`search.SLOT_REFINE`),
    interleaved in one process on the same validation queries, hybrid search with the product's
    other defaults (refine 20 for the caption and video-text lists); how many hit lists equal
    the first value's."""
    from story.tasks.library import search as product

    index, searcher, cases, vectors = _validation_searcher(lancedb, queries)
    shipped = product.SLOT_REFINE
    timings: dict[int, list[float]] = {value: [] for value in values}
    hits: dict[int, list[list[str]]] = {value: [] for value in values}
    try:
        for _ in range(rounds):
            for value in values:
                product.SLOT_REFINE = value
                hits[value] = _timed_searches(searcher, cases, vectors, timings[value])
    finally:
        product.SLOT_REFINE = shipped
    first = values[0]
    p50 = {str(v): round(statistics.median(ms), 2) for v, ms in timings.items()}
    return {
        "table": lancedb,
        "rows": index.count(),
        "queries": queries,
        "split": "validation",
        "rounds": rounds,
        "shipped": shipped,
        "p50_ms": p50,
        "p95_ms": {
            str(v): round(sorted(ms)[int(0.95 * (len(ms) - 1))], 2) for v, ms in timings.items()
        },
        "ratio_to_first": {str(v): round(p50[str(v)] / p50[str(first)], 3) for v in values},
        "same_hits_as_first": {
            str(v): sum(a == b for a, b in zip(hits[v], hits[first], strict=True)) for v in values
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def clients(lancedb: str, queries: int, seconds: float, counts: tuple[int, ...]) -> dict[str, Any]:
    """Queries per second with 1 / 4 / 16 concurrent clients, query vectors given (search
    alone): through LanceDB, then from the table held in memory with OpenBLAS's own threads,
    then with one BLAS thread (what a searcher holding a large table sets,
    `searcher._one_blas_thread`); each client searches the validation queries in turn."""
    from story.tasks.evaluation.search_eval import throughput
    from story.tasks.library.partitioned import PartitionedTable
    from story.tasks.library.searcher import RESIDENT_COLUMNS

    index, searcher, cases, vectors = _validation_searcher(lancedb, queries)
    through_lancedb = {n: throughput(searcher, cases, n, seconds, vectors) for n in counts}
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, scratch=Path(lancedb).parent)
    searcher.resident = True
    searcher._table, searcher._table_key = table, (id(index), index.version())  # no BLAS limit
    blas_threads = {n: throughput(searcher, cases, n, seconds, vectors) for n in counts}
    searcher.hold(table)  # one BLAS thread from here on
    one_thread = {n: throughput(searcher, cases, n, seconds, vectors) for n in counts}
    return {
        "table": lancedb,
        "rows": index.count(),
        "queries": queries,
        "seconds_per_pass": seconds,
        "queries_per_second": {
            "lancedb": through_lancedb,
            "in memory, OpenBLAS threads": blas_threads,
            "in memory, one BLAS thread": one_thread,
        },
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    scale = sub.add_parser("scale")
    scale.add_argument("--rows", type=int, default=1_000_000)
    scale.add_argument("--distinct", type=int, default=100_000)
    scale.add_argument("--split", default="validation")
    scale.add_argument("--queries", type=int, default=200)
    scale.add_argument(
        "--settings",
        nargs="+",
        default=None,
        help="nprobes:refine pairs to sweep, e.g. 10:none 20:20 (default: the evaluation's)",
    )
    scale.add_argument("--clients-seconds", type=float, default=20.0)
    scale.add_argument("--data-dir", type=Path, default=Path("/tmp/story-bench-search"))
    scale.add_argument("--cache", type=Path, default=Path("runs/search_corpus"))
    scale.add_argument("--out", type=Path, default=None)
    fetch = sub.add_parser("rows")
    fetch.add_argument("--lancedb", required=True, help="a kept table (story eval search --keep)")
    fetch.add_argument("--queries", type=int, default=100)
    fetch.add_argument("--rounds", type=int, default=3)
    fetch.add_argument("--out", type=Path, default=RESULTS / "search_rows.json")
    slots = sub.add_parser("slots")
    slots.add_argument("--lancedb", required=True, help="a kept table (story eval search --keep)")
    slots.add_argument("--queries", type=int, default=200)
    slots.add_argument("--rounds", type=int, default=3)
    slots.add_argument("--values", type=int, nargs="+", default=[20, 5])
    slots.add_argument("--out", type=Path, default=RESULTS / "search_slots.json")
    many = sub.add_parser("clients")
    many.add_argument("--lancedb", required=True, help="a kept table (story eval search --keep)")
    many.add_argument("--queries", type=int, default=200)
    many.add_argument("--seconds", type=float, default=20.0)
    many.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    many.add_argument("--out", type=Path, default=RESULTS / "search_clients.json")
    live = sub.add_parser("interactive")
    live.add_argument("--lancedb", required=True)
    live.add_argument("--workspace", type=Path, default=Path("workspace"))
    live.add_argument("--runs", type=int, default=5)
    live.add_argument("--out", type=Path, default=RESULTS / "search_interactive.json")
    args = parser.parse_args()
    if args.what == "interactive":
        report = interactive(args.lancedb, args.workspace, args.runs)
        out = args.out
    elif args.what == "slots":
        report = slot_refine(args.lancedb, args.queries, args.rounds, tuple(args.values))
        out = args.out
    elif args.what == "clients":
        report = clients(args.lancedb, args.queries, args.seconds, tuple(args.clients))
        out = args.out
    elif args.what == "rows":
        report = row_reads(args.lancedb, args.queries, args.rounds)
        out = args.out
    else:
        from story.tasks.evaluation.search_eval import SearchEvalConfig, evaluate_search

        config = SearchEvalConfig(
            split=args.split,
            rows=args.rows,
            distinct=args.distinct,
            queries=args.queries,
            **({"settings": [_setting(x) for x in args.settings]} if args.settings else {}),
            client_seconds=args.clients_seconds,
            data_dir=args.data_dir,
        )
        report = evaluate_search(config, args.cache, log=lambda line: print(line, flush=True))
        name = "search.json" if args.rows < 5_000_000 else "search_10m.json"
        out = args.out or RESULTS / name
    report = {
        "benchmark": f"search {args.what}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **report,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
