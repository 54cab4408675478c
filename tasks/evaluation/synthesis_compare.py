"""Two synthesis reports on the same plots, compared case by case: B minus A with 95% intervals.

Choosing a checkpoint (a training step, a recipe, a sampling setting) on validation asks whether
B is better than A, not whether their intervals overlap: both reports score the same plots
(the cases come from the split's seeds), so the difference is taken per plot and bootstrapped
over plots (`intervals.paired_difference`). A report keeps its per-case scores (`per_case`);
plots are matched by scene seed, and a plot's sampling seeds are averaged first when the two
runs used different numbers of them. Beside the difference, B's mean over A's (`b_over_a`, the
same paired bootstrap) gives small changes in relative terms ("warp error -7.7%"), which four
decimals of a raw difference round away.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.errors import StoryError
from story.tasks.evaluation.intervals import mean_interval, paired_difference, ratio_interval


class CompareError(StoryError, ValueError):
    """Reports that cannot be compared (no per-case scores, no plots in common)."""


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json, or the report folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise CompareError(f"{path}: no synthesis report here")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CompareError(f"{path}: not a JSON report: {exc}") from exc
    if "per_case" not in report.get("summary", {}):
        raise CompareError(
            f"{path}: the report has no per-case scores (written before they were kept); "
            "score it again with `story eval synthesis` (its renders are reused)"
        )
    report["_path"] = str(path)
    return report


def _scores(report: dict[str, Any], case_set: str, condition: str) -> tuple[list[int], dict]:
    per_case = report["summary"]["per_case"]
    if case_set not in per_case:
        raise CompareError(f"{report['_path']}: no {case_set!r} cases (has {sorted(per_case)})")
    if condition not in per_case[case_set]:
        raise CompareError(f"{report['_path']}: no {condition!r} renders in {case_set!r}")
    return per_case[case_set]["scene_seeds"], per_case[case_set][condition]


def compare_reports(
    a: dict[str, Any],
    b: dict[str, Any],
    case_set: str = "production",
    condition: str = "structure-guided",
    condition_b: str | None = None,
) -> dict[str, Any]:
    """Per metric: A's and B's means and B - A paired over the plots both scored."""
    seeds_a, rows_a = _scores(a, case_set, condition)
    seeds_b, rows_b = _scores(b, case_set, condition_b or condition)
    where_a = {seed: i for i, seed in enumerate(seeds_a)}
    where_b = {seed: i for i, seed in enumerate(seeds_b)}
    common = [s for s in seeds_a if s in where_b]
    if len(common) < 2:
        raise CompareError(
            f"{a['_path']} and {b['_path']}: {len(common)} plot(s) in common; score the same "
            "split with overlapping --scenes"
        )
    index_a = [where_a[s] for s in common]
    index_b = [where_b[s] for s in common]
    metrics = [m for m in rows_a if m in rows_b]
    out: dict[str, Any] = {}
    for metric in metrics:
        va = np.asarray(rows_a[metric], dtype=np.float64)[index_a]
        vb = np.asarray(rows_b[metric], dtype=np.float64)[index_b]
        if va.shape != vb.shape:
            va, vb = va.mean(1, keepdims=True), vb.mean(1, keepdims=True)
        out[metric] = {
            "a": mean_interval(va),
            "b": mean_interval(vb),
            "b_minus_a": paired_difference(vb, va),
            # Relative terms only where A's mean is a positive scale to compare against.
            "b_over_a": ratio_interval(vb, va) if va.mean() > 0 and (va >= 0).all() else None,
        }
    return {
        "a": {"model_id": a["summary"]["model_id"], "report": a["_path"], "condition": condition},
        "b": {
            "model_id": b["summary"]["model_id"],
            "report": b["_path"],
            "condition": condition_b or condition,
        },
        "set": case_set,
        "plots": len(common),
        "metrics": out,
    }


def comparison_markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table (B - A; * where the interval excludes 0)."""
    a, b = result["a"], result["b"]
    lines = [
        f"{result['set']}, {result['plots']} plots in common; A = {a['model_id']} "
        f"({a['condition']}), B = {b['model_id']} ({b['condition']})",
        "",
        "| | A | B | B - A | B / A - 1 |",
        "|---|---|---|---|---|",
    ]
    for metric, cell in result["metrics"].items():
        d = cell["b_minus_a"]
        star = " *" if d["significant"] else ""
        ratio = cell.get("b_over_a")
        relative = (
            f"{ratio['ratio'] - 1:+.1%} [{ratio['low'] - 1:+.1%}, {ratio['high'] - 1:+.1%}]"
            if ratio
            else ""
        )
        lines.append(
            f"| {metric} | {_cell(cell['a'])} | {_cell(cell['b'])} | "
            f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{star} | {relative} |"
        )
    lines += ["", "* the 95% interval of the paired difference excludes 0"]
    return "\n".join(lines)


def _cell(interval: dict[str, float]) -> str:
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
