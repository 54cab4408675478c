"""The faults table: run tests/faults, print `case | expected | observed | held`, write JSON.

`python -m bench.faults [--fast]`: --fast runs the CI cases only (pytest `-m "not slow"`), the
default runs the slow ones too (repeated kill -9, the heavy story fuzz, real renders). Each test
records its rows as junit-xml properties; a test without rows becomes one row from `CASES`.
Cases not automated yet are listed as pending.
Writes bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "faults.json"

# Tests that assert without recording rows: test function -> (case, expected).
CASES = {
    "test_json_mode_prints_the_error_as_one_json_document": (
        "story: bad story with `story plots --json`",
        "exit 2, one JSON document {error: FILE:LINE: ...}",
    ),
    "test_absurd_numbers_are_refused_at_their_line": (
        "story: absurd frames / seed / tau values (13 forms)",
        "refused at their line",
    ),
    "test_unicode_line_breaks_do_not_shift_the_reported_line": (
        "story: NEL / LS / PS characters before an error",
        "the error names the line an editor shows",
    ),
    "test_fuzz_mutated_stories_raise_only_story_errors_naming_a_real_line": (
        "story fuzz: 50 mutated good stories (hypothesis)",
        "only StoryScriptError, naming a real line",
    ),
    "test_fuzz_heavy_stories_bytes_and_yaml_soup_raise_only_story_errors": (
        "story fuzz: 3000 mutated stories, random bytes, YAML token soup (hypothesis)",
        "only StoryScriptError, naming a real line",
    ),
    "test_the_unsafe_load_detector_sees_what_it_must": (
        "security: the pickle-load detector flags known unsafe calls",
        "flags 5 of 9 sample calls",
    ),
}

PENDING: list[tuple[str, str]] = []


def _outcome(case: ET.Element) -> tuple[str, str]:
    """('passed' | 'failed' | 'xfailed' | 'skipped', message) of a junit testcase."""
    for tag in ("failure", "error"):
        node = case.find(tag)
        if node is not None:
            return "failed", (node.get("message") or "")[:200]
    node = case.find("skipped")
    if node is not None:
        kind = "xfailed" if node.get("type") == "pytest.xfail" else "skipped"
        return kind, (node.get("message") or "")[:200]
    return "passed", ""


def rows_from_junit(path: Path) -> list[dict[str, Any]]:
    """One row per recorded fault case (or per unrecorded test), with the test's outcome."""
    rows: list[dict[str, Any]] = []
    merged: dict[str, dict[str, Any]] = {}  # parametrized tests without rows: one row each
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = _outcome(case)
        test = f"{case.get('classname')}::{case.get('name')}"
        recorded = [
            json.loads(p.get("value", "{}"))
            for p in case.iter("property")
            if p.get("name") == "fault"
        ]
        for row in recorded:
            held = bool(row["held"]) and outcome == "passed"
            rows.append({**row, "held": "yes" if held else "no", "test": test})
        if not recorded and outcome != "skipped":
            function = str(case.get("name")).split("[")[0]
            label, expected = CASES.get(function, (function, "passes"))
            observed = expected if outcome == "passed" else f"{outcome}: {message}"
            if function in merged:
                row = merged[function]
                if row["held"] == "yes" and outcome != "passed":
                    row.update(observed=observed, held="no")
                continue
            merged[function] = {
                "case": label,
                "expected": expected,
                "observed": observed,
                "held": "yes" if outcome == "passed" else "no",
                "test": f"{case.get('classname')}::{function}",
            }
            rows.append(merged[function])
    return rows


def run(fast: bool) -> dict[str, Any]:
    """Run the fault tests in a pytest subprocess and collect the table."""
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "faults.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/faults",
            "-m",
            "not slow" if fast else "slow or not slow",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if not junit.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"pytest wrote no report (exit {proc.returncode})")
        rows = rows_from_junit(junit)
    rows += [
        {"case": c, "expected": e, "observed": "not run yet", "held": "pending"} for c, e in PENDING
    ]
    counts = {h: sum(r["held"] == h for r in rows) for h in ("yes", "no", "pending")}
    return {
        "mode": "fast" if fast else "full",
        "seconds": round(seconds, 1),
        "pytest_exit": proc.returncode,
        "counts": counts,
        "rows": rows,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    lines = ["| case | expected | observed | held |", "|---|---|---|---|"]
    for row in rows:
        cells = [str(row[k]).replace("|", "/").replace("\n", " ") for k in ("case", "expected")]
        cells += [str(row["observed"]).replace("|", "/").replace("\n", " ")[:160], row["held"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="Only the cases CI runs.")
    args = parser.parse_args()
    report = run(args.fast)
    print(table(report["rows"]))
    print(
        f"\n{report['counts']['yes']} held, {report['counts']['no']} did not, "
        f"{report['counts']['pending']} pending ({report['mode']}, {report['seconds']} s)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
