"""The synthesis report's tables: every figure with its 95% interval and its baselines beside it.

Renders have one score per case and sampling seed (N, S); baselines and real clips one per case
(N, 1), broadcast over seeds when paired with a render. Intervals resample cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from story.tasks.evaluation.clip_scores import (
    ALL,
    ATTRIBUTES,
    COLUMNS,
    DEPTH,
    IOU,
    MOTION,
    OBJECT_DEPTH,
    WARP,
)
from story.tasks.evaluation.frechet import frechet_interval
from story.tasks.evaluation.intervals import mean_interval, paired_difference, ratio_interval
from story.tasks.evaluation.report import Table
from story.tasks.evaluation.synthesis_cases import RETRIEVED, SynthesisCase

FVD = "FVD"
MOTION_ERROR = "motion error"
"""|render's motion magnitude - the real clip's| per plot: a pooled motion ratio lets a render
that moves too much on some plots (flicker read as motion) hide one that moves too little on
others; this does not."""
DIFF_COLUMNS: tuple[str, ...] = (*ATTRIBUTES, ALL, IOU, WARP, MOTION_ERROR, DEPTH, OBJECT_DEPTH)


def guide_frames(guide: np.ndarray) -> np.ndarray:
    """A (T, H, W) guide in [-1, 1] as grey RGB frames (near = bright)."""
    grey = ((guide + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    seeds = max(a.shape[1], b.shape[1])
    return paired_difference(
        np.repeat(a, seeds // a.shape[1], 1), np.repeat(b, seeds // b.shape[1], 1)
    )


def case_tables(
    name: str,
    cases: list[SynthesisCase],
    scored: dict[str, Any],
    guided: str,
    text_only: str,
    ceiling: str,
    real_again: str,
) -> tuple[list[Table], dict[str, Any]]:
    """The tables of one case set and a compact summary of their headline figures.

    Adds each condition's MOTION_ERROR to `scored["rows"]` (against the `ceiling` row), so the
    report's per-case scores, which are read from those rows, keep it for `story eval compare`."""
    rows: dict[str, dict[str, np.ndarray]] = scored["rows"]
    n, seeds = rows[guided][ALL].shape
    columns = [c for c in COLUMNS if c in rows[guided]]
    main = Table(
        f"{name}: what the judge reads in each condition ({n} cases x {seeds} sampling seeds)",
        columns,
        {label: {c: mean_interval(v[c]) for c in columns} for label, v in rows.items()},
        note="attributes: share of clips where the judge reads the target (prompt's shape, "
        "colour, texture, ground; the guide clip's motion and camera); object IoU: judge's "
        "main-object mask vs the guide's; warp error: flow-compensated frame difference "
        "(mean |RGB|/255); motion magnitude: mean optical flow per frame / frame width; depth "
        "error: mean |estimated - guide| / 2 in normalised disparity (bundled depth net), over the "
        "frame and over the guide's main object",
    )
    reference = rows[ceiling]
    for label, v in rows.items():
        if label != ceiling and MOTION in v:
            v[MOTION_ERROR] = np.abs(v[MOTION] - reference[MOTION])
    temporal = Table(
        f"{name}: temporal quality relative to the real clip with the prompt's look",
        ["warp error / real", "motion / real", "motion error / real"],
        {
            label: {
                "warp error / real": ratio_interval(v[WARP], reference[WARP]),
                "motion / real": ratio_interval(v[MOTION], reference[MOTION]),
                "motion error / real": ratio_interval(v[MOTION_ERROR], reference[MOTION]),
            }
            for label, v in rows.items()
            if label != ceiling
        },
        note="a frozen frame has no warp error but no motion: temporal quality needs both near 1; "
        "motion error is |the render's motion - the real clip's| plot by plot, over the real "
        "clip's mean motion (0 is the real motion on every plot, 1 is as far off as no motion), "
        "so moving too much on some plots cannot cancel moving too little on others",
    )
    others = [label for label in rows if label not in (guided, ceiling, real_again)]
    diff_columns = [c for c in DIFF_COLUMNS if c in rows[guided]]
    differences = Table(
        f"{name}: paired differences (structure-guided minus each other condition)",
        diff_columns,
        {
            f"{guided} - {label}": {
                c: _paired(rows[guided][c], rows[label][c]) for c in diff_columns
            }
            for label in others
        },
        note="* the 95% interval excludes 0; a gain inside the interval is not a gain",
    )
    embeddings: dict[str, list[np.ndarray]] = scored["embeddings"]
    fvd_rows = {
        label: {FVD: frechet_interval(embeddings[ceiling][0], sets)}
        for label, sets in embeddings.items()
        if label != ceiling
    }
    fvd = Table(
        f"{name}: miniature FVD (judge embeddings) to the real clips with the prompt's look",
        [FVD],
        fvd_rows,
        note=f"{n} clips per set, paired by case; each render seed is one set and the distances "
        "are averaged; the real-vs-real row is the floor a perfect generator would reach",
    )
    tables = [main, differences, temporal, fvd]
    if DEPTH in rows[guided]:
        structure = Table(
            f"{name}: depth error relative to text-only (the README's structure ratio)",
            [f"{DEPTH} / text-only", f"{OBJECT_DEPTH} / text-only"],
            {
                label: {
                    f"{c} / text-only": ratio_interval(v[c], rows[text_only][c])
                    for c in (DEPTH, OBJECT_DEPTH)
                }
                for label, v in rows.items()
                if label != text_only
            },
            note="below 1: the render's depth follows the guide better than text alone does; a "
            "baseline with no object shows what the ratio gives for free",
        )
        tables.insert(2, structure)
    summary: dict[str, Any] = {
        "cases": n,
        "seeds": seeds,
        "all_six": {label: main.rows[label][ALL]["mean"] for label in rows},
        "object_iou": {label: main.rows[label][IOU]["mean"] for label in rows},
        "fvd": {label: cells[FVD]["fvd"] for label, cells in fvd_rows.items()},
        "guided_minus_text_only": differences.rows[f"{guided} - {text_only}"],
    }
    if cases[0].retrieval is not None:
        hits = {k: np.array([c.retrieval[k] for c in cases]) for k in RETRIEVED}
        hits["all three"] = np.prod([hits[k] for k in RETRIEVED], axis=0)
        retrieval = Table(
            f"{name}: does the retrieved clip match the plot's query (truth, not the judge)",
            [*RETRIEVED, "all three"],
            {"top-1 hit (hybrid search)": {k: mean_interval(v) for k, v in hits.items()}},
        )
        tables.append(retrieval)
        summary["retrieval_all_three"] = retrieval.rows["top-1 hit (hybrid search)"]["all three"]
    return tables, summary
