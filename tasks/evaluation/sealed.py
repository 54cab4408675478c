"""The sealed test split's ledger: one scored run per (area, model id), recorded before it runs.

`--split test` appends (area, model id, date, command) to bench/results/sealed_test_runs.jsonl
and refuses a second run of the same area on the same model id unless `rerun=True`
(`--rerun-sealed`), which is recorded too. The entry is written before the scores exist, so a
crashed or discarded test run still counts: the test split cannot be consulted quietly. A long
run that stopped before its report (the synthesis evaluation keeps every render) is continued by
the same command on the same folder, recorded as `resumed`.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.settings import REPO_ROOT

LEDGER = REPO_ROOT / "bench" / "results" / "sealed_test_runs.jsonl"


class SealedSplitError(StoryError):
    """A second run on the sealed test split for a model that was already scored there."""


def read_ledger(path: Path | None = None) -> list[dict[str, Any]]:
    """Every recorded test run; a line that is not JSON is an error naming the line."""
    path = path or LEDGER
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise StoryError(f"{path}:{number}: not a JSON ledger entry: {exc}") from exc
    return entries


def configuration_id(model_id: str, sampling: dict[str, float]) -> str:
    """What a sealed run scores: the model, and the sampling knobs set other than the defaults.

    A sampling setting a release ships (a new default knob) is its own configuration, so the
    ledger allows one sealed run per (model, knobs), not one per model whatever the knobs."""
    knobs = ",".join(f"{key}={value:g}" for key, value in sorted(sampling.items()))
    return f"{model_id} {knobs}" if knobs else model_id


def open_sealed_run(
    area: str,
    model_id: str,
    *,
    rerun: bool = False,
    command: list[str] | None = None,
    details: dict[str, Any] | None = None,
    path: Path | None = None,
    resume_key: str | None = None,
    finished: bool = True,
) -> dict[str, Any]:
    """Record a test-split run of `area` on `model_id`, or refuse a repeat without `rerun`.

    `resume_key` names a run that can be interrupted and resumed (its configuration and output
    folder); while `finished` is False, a run with the key of an earlier entry continues that
    run: it is recorded (`resumed`), not refused, and it is not a re-run.
    """
    path = path or LEDGER
    earlier = [e for e in read_ledger(path) if e["area"] == area and e["model_id"] == model_id]
    resumes = (
        resume_key is not None
        and not finished
        and any(e.get("resume_key") == resume_key for e in earlier)
    )
    if earlier and not rerun and not resumes:
        first = earlier[0]
        raise SealedSplitError(
            f"{path}: the sealed test split was already scored for {area} on {model_id} "
            f"({first['date']}: {first['command']}); pass --rerun-sealed to score it again "
            "(the re-run is recorded)"
        )
    entry = {
        "area": area,
        "model_id": model_id,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(command if command is not None else sys.argv),
        **({"resumed": True} if resumes else {"rerun": bool(earlier)}),
        **({"resume_key": resume_key} if resume_key is not None else {}),
        **(details or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    return entry
