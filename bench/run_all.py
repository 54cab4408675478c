"""Run every benchmark: each `bench/bench_*.py` (and the faults table), one process each.

`python -m bench.run_all` runs them with their own defaults (`FULL_ARGS` where one needs an
argument; the full measurements take hours, bench_scale alone writes a 10M-row table) and
writes bench/results/run_all.json: per benchmark its command, exit code and seconds. A failing
benchmark does not stop the others; the exit code is 1 if any failed.

`--quick` is a smoke run: each benchmark with the small arguments in `QUICK_ARGS`, results
written under a scratch folder (`--scratch`, default a temporary one) and never over the
committed ones: `--out` points there where a benchmark takes it, and any file under
bench/results or datasets/preview that a run changes anyway is moved there and the committed
version put back. `--only` / `--skip` choose benchmarks by name (e.g. `bench_render`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
GUARDED = (RESULTS, REPO / "datasets" / "preview")
SAMPLE_MANIFEST = REPO / "datasets" / "sample_library" / "manifest.jsonl"
QUICK_INGEST_ROWS = 16

ArgsFor = Callable[[Path], list[str]]


def _small_manifest(scratch: Path) -> list[str]:
    """The first rows of the sample library, uris made absolute, as bench_ingest's manifest."""
    rows = []
    for line in SAMPLE_MANIFEST.read_text().splitlines()[:QUICK_INGEST_ROWS]:
        row = json.loads(line)
        row["uri"] = str((SAMPLE_MANIFEST.parent / row["uri"]).resolve())
        rows.append(json.dumps(row))
    manifest = scratch / "ingest_manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return ["--manifest", str(manifest), "--shard-size", "8"]


def _fixed(*args: str) -> ArgsFor:
    return lambda scratch: list(args)


QUICK_ARGS: dict[str, ArgsFor] = {
    "bench_concepts": _fixed("--steps", "2", "--shots", "1", "--sample-steps", "2", "--seeds", "1"),
    "bench_decode": _fixed("--limit", "4", "--repeat", "1"),
    "bench_depth": _fixed("--heldout", "2", "--clips", "4", "--repeats", "1"),
    "bench_ingest": _small_manifest,
    "bench_ingest_sizes": lambda scratch: [
        *("--clips", "2", "--size", "64x16", "--libraries", str(scratch / "ingest-sizes")),
    ],
    "bench_knobs": _fixed(
        *("--checkpoint", "tiny", "--scenes", "2", "--seeds", "1", "--steps", "2"),
        *("--knobs", "tau"),
    ),
    "bench_miniworld": _fixed("--clips", "4"),
    "bench_proxy": _fixed("--scenes", "2", "--grid", "1"),
    "bench_render": _fixed(
        "--steps", "2", "--repeats", "1", "--long-shots", "2", "--long-shot-seeds", "1"
    ),
    "bench_retime": _fixed("--scenes", "2", "--steps", "2", "--grid", "1"),
    "bench_retrieval": _fixed("--queries", "10"),
    "bench_scale": lambda scratch: [
        *("--rows", "20000", "--group", "10000", "--captions", "200", "--queries", "10"),
        *("--data-dir", str(scratch / "scale-data")),
    ],
    "bench_shots": _fixed("--repeats", "1"),
    "bench_vae": _fixed("--vae", "checkpoints/t2v-tiny/vae", "--scenes", "2"),
    "bench_search": lambda scratch: [
        *("interactive", "--lancedb", str(REPO / "datasets" / "index")),
        *("--workspace", str(scratch / "search-workspace"), "--runs", "1"),
    ],
    "bench_synthesis": _fixed(
        *("--scenes", "2", "--seeds", "1", "--steps", "2", "--library-clips", "20"),
        *("--timing-steps", "2", "--repeats", "1"),
    ),
    "bench_warm_workers": _fixed("--rounds", "1", "--renders", "1"),
    "faults": _fixed("--fast"),
}
# Arguments a benchmark cannot run without, for the full run.
FULL_ARGS: dict[str, list[str]] = {
    "bench_vae": ["--vae", "checkpoints/t2v-tiny/vae"],
    "bench_search": ["scale"],
}


def discover() -> list[str]:
    """Every benchmark module: bench/bench_*.py, then the faults table."""
    names = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    return [*names, "faults"] if (BENCH / "faults.py").is_file() else names


def takes_out(name: str) -> bool:
    """Whether the benchmark's command line has an `--out` option (read from its source)."""
    return '"--out"' in (BENCH / f"{name}.py").read_text()


def _snapshot() -> dict[Path, bytes]:
    files = [p for root in GUARDED if root.is_dir() for p in root.rglob("*") if p.is_file()]
    return {p: p.read_bytes() for p in files}


def _restore(before: dict[Path, bytes], scratch: Path) -> list[str]:
    """Put back committed files a quick run changed (keeping its version in `scratch`) and move
    files it added there; returns what was moved, relative to the repository."""
    moved = []
    after = {p for root in GUARDED if root.is_dir() for p in root.rglob("*") if p.is_file()}
    for path in sorted(after | set(before)):
        old = before.get(path)
        if path.is_file() and old is not None and path.read_bytes() == old:
            continue
        relative = path.relative_to(REPO)
        if path.is_file():
            target = scratch / "changed" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved.append(str(relative))
        if old is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(old)
    return moved


def run_one(name: str, quick: bool, scratch: Path, timeout: float | None) -> dict[str, Any]:
    """Run one benchmark in its own process; what it was, how it ended, how long it took."""
    args: list[str] = list(FULL_ARGS.get(name, []))
    if quick:
        if name in QUICK_ARGS:
            args = QUICK_ARGS[name](scratch)
        else:
            print(f"note: no quick arguments for {name}: running it with its defaults", flush=True)
        if takes_out(name):
            args += ["--out", str(scratch / f"{name}.json")]
    command = [sys.executable, "-m", f"bench.{name}", *args]
    before = _snapshot() if quick else {}
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        code = subprocess.run(command, cwd=REPO, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = round(time.perf_counter() - t0, 1)
    moved = _restore(before, scratch) if quick else []
    status = "ok" if code == 0 else ("timeout" if code is None else "failed")
    print(f"== {name}: {status} in {seconds} s", flush=True)
    return {
        "name": name,
        "command": command[1:],
        "status": status,
        "exit_code": code,
        "seconds": seconds,
        "moved_to_scratch": moved,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smoke run: small arguments.")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="Run only these benchmarks.")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="Leave these out.")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds per benchmark.")
    parser.add_argument("--scratch", type=Path, help="Where --quick writes (default: a tmp dir).")
    parser.add_argument("--list", action="store_true", help="Print the benchmarks and exit.")
    args = parser.parse_args(argv)

    names = discover()
    unknown = sorted(set(args.only or []) - set(names)) + sorted(set(args.skip) - set(names))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)} (have: {', '.join(names)})")
    chosen = [n for n in names if (not args.only or n in args.only) and n not in args.skip]
    if args.list:
        print("\n".join(chosen))
        return 0
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="story-bench-quick-"))
    scratch.mkdir(parents=True, exist_ok=True)
    runs = [run_one(name, args.quick, scratch, args.timeout) for name in chosen]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "runs": runs,
    }
    out = (scratch if args.quick else RESULTS) / "run_all.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [r["name"] for r in runs if r["status"] != "ok"]
    print(f"\n{len(runs) - len(failed)}/{len(runs)} benchmarks ok; report {out}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
