"""The same search path at 10M rows: build once, late, with nice -n 19, then delete the table.

    nice -n 19 python -m bench.bench_scale [--rows 10000000 --split validation]

~16 GB of disk and the longest index build of the benchmarks; results (bench/results/
scale_10m.json) are `story.tasks.evaluation.search_eval`'s report: scene-level recall@10 against
exact search, the nprobes sweep, `search()` p50 / p95 and queries per second. The table under
--data-dir is removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "scale_10m.json"


def main() -> None:
    from story.tasks.evaluation.search_eval import SearchEvalConfig, evaluate_search

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=30)
    parser.add_argument("--nprobes", type=int, nargs="+", default=[20, 40, 80, 120])
    parser.add_argument("--clients-seconds", type=float, default=20.0)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/story-bench-scale"))
    parser.add_argument("--cache", type=Path, default=Path("runs/search_corpus"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = SearchEvalConfig(
        split=args.split,
        rows=args.rows,
        distinct=args.distinct,
        queries=args.queries,
        exact_queries=args.exact_queries,
        nprobes=args.nprobes,
        client_seconds=args.clients_seconds,
        data_dir=args.data_dir,
        keep=args.keep,
    )
    report = evaluate_search(config, args.cache, log=lambda line: print(line, flush=True))
    report = {
        "benchmark": "search at 10M rows",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **report,
    }
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
