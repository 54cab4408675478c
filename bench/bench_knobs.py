"""Sampling-knob sweeps on the validation split: tau, structure detail level, temporal guidance
and structure strength, one at a time from the product defaults, each point a `story eval
synthesis` run on the production path (retrieved clip, estimated depth, a new look).

    python -m bench.bench_knobs --checkpoint t2v-64f4 --scenes 24 --seeds 1

Text-only renders are shared by every point of a structure knob's sweep (a knob cache key); each
point's table row is the judge's reading of the structure-guided renders with 95% intervals.
Results: bench/results/knobs_validation_<checkpoint>.json. Validation only: the choice of a
default is made here, and the sealed test split scores the shipped setting once.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from story.models.pipeline import SAMPLING_DEFAULTS
from story.tasks.evaluation.synthesis_eval import GUIDED, SynthesisEvalConfig, evaluate_synthesis
from story.tasks.settings import Settings
from story.tasks.world import splits

REPO = Path(__file__).resolve().parent.parent
SWEEPS: dict[str, list[float]] = {
    "tau": [0, 250, 500, 750],
    "detail": [0, 1, 2, 3],
    "temporal_guidance": [0.0, 0.5, 1.0, 1.5],
    "strength": [0.5, 1.0, 1.5],
}
COLUMNS = ("shape", "colour", "texture", "motion", "all six", "object IoU", "warp error")


def guided_row(report: dict[str, Any]) -> dict[str, Any]:
    """The structure-guided row of the production table: each column's mean and interval."""
    table = next(t for t in report["tables"] if t["title"].startswith("production: what"))
    return {c: table["rows"][GUIDED][c] for c in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="t2v-64f4")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--knobs", default=",".join(SWEEPS), help="Comma-separated knobs.")
    parser.add_argument("--out", type=Path, default=None, help="Run folder (renders are cached).")
    args = parser.parse_args()
    settings = Settings()
    out = args.out or settings.workspace / "eval" / f"knobs-{args.checkpoint}"
    results = REPO / "bench" / "results" / f"knobs_validation_{args.checkpoint}.json"
    points: list[dict[str, Any]] = []
    for knob in args.knobs.split(","):
        for value in SWEEPS[knob]:
            sampling = {} if value == SAMPLING_DEFAULTS[knob] else {knob: value}
            config = SynthesisEvalConfig(
                split=splits.VALIDATION,
                checkpoint=args.checkpoint,
                scenes=args.scenes,
                seeds=args.seeds,
                steps=args.steps,
                controlled=False,
                sampling=sampling,
            )
            t0 = time.monotonic()
            run = out / (f"{knob}-{value:g}" if sampling else "defaults")
            evaluate_synthesis(config, run, settings.checkpoints, settings.workspace, log=print)
            report = json.loads((run / "report.json").read_text())
            points.append(
                {
                    "knob": knob,
                    "value": value,
                    "default": not sampling,
                    "seconds": round(time.monotonic() - t0, 1),
                    "guided": guided_row(report),
                    "model_id": report["summary"]["model_id"],
                }
            )
            results.write_text(
                json.dumps(
                    {
                        "when": datetime.now(UTC).isoformat(timespec="seconds"),
                        "split": splits.VALIDATION,
                        "checkpoint": args.checkpoint,
                        "scenes": args.scenes,
                        "seeds": args.seeds,
                        "steps": args.steps,
                        "defaults": {k: SAMPLING_DEFAULTS[k] for k in SWEEPS},
                        "points": points,
                    },
                    indent=2,
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
