"""A command's JSON summary as a DVC stage record: what it did, not when, how fast, or where.

DVC locks the hash of every stage output, the summaries kept as metrics included, so a summary
that carries wall-clock timings or a machine's absolute paths makes two builds of the same data
lock different hashes. `python -m story.tasks.provenance.stable_record summary.json` drops the
timing fields (keys in `TIMING_KEYS`, at any depth) and writes paths under the current folder
relative to it; counts, ids, versions and hashes pass through. Timings belong to `bench/`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from story.tasks.reproducible import relative_inside

TIMING_KEYS = frozenset({"timings", "seconds", "wall_s", "elapsed_s"})


def stable(value: Any, root: str) -> Any:
    """`value` without timing fields, with absolute paths under `root` made relative."""
    if isinstance(value, dict):
        return {k: stable(v, root) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [stable(v, root) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return relative_inside(value, root) or value
    return value


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m story.tasks.provenance.stable_record SUMMARY.json")
    try:
        with open(args[0], encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{args[0]}: not a readable JSON summary: {exc}") from exc
    json.dump(stable(data, os.path.abspath(os.getcwd())), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
