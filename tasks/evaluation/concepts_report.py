"""The report of `story eval concepts`: its tables (identity, alignment and IoU per row, each
method against the character in words, the paper's ordering as paired differences, a run against
another, the autoencoder's ceiling), its grid and its summary, from the rows
`story.tasks.evaluation.concepts_eval` scored."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.concepts.methods import METHODS
from story.tasks.evaluation.clip_scores import IOU
from story.tasks.evaluation.concept_characters import Character
from story.tasks.evaluation.concept_shots import ConceptShot
from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.evaluation.report import Grid, Table, write_report

if TYPE_CHECKING:
    from story.tasks.evaluation.concepts_eval import ConceptEvalConfig

BOB = "bob (all three)"
ALIGNED = "ground + motion"
SIGNATURE = "colour signature"
GRID_SHOTS = 6
NO_CONCEPT_LABEL = "baseline: no concept (untrained token)"
WITH_DECODER = "+decoder"


METHOD_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("timeinv_lora", "timeinv", "LoRA"),
    ("ti_lora", "ti", "LoRA"),
    ("timeinv", "ti", "timestep buckets"),
    ("timeinv_lora", "ti_lora", "timestep buckets"),
    ("ti", "none", "a trained token"),
)
"""(method, against, what the difference isolates): the paper's ordering as paired
differences, asked of the plain rows and of the `+decoder` rows alike."""


def row_label(method: str) -> str:
    """A trained row's label: the untrained token is the no-concept baseline."""
    return NO_CONCEPT_LABEL if method == "none" else method


def method_differences(stacked: dict[str, Any], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Paired differences (by shot and seed) between the rows present: each METHOD_PAIRS pair,
    plain and with the decoder top, and each method's decoder top against none."""
    rows: dict[str, dict[str, Any]] = {}

    def add(first: str, second: str, title: str) -> None:
        a, b = stacked.get(row_label(first)), stacked.get(row_label(second))
        if a is not None and b is not None:
            rows[title] = {c: paired_difference(a[c], b[c]) for c in columns}

    for suffix in ("", WITH_DECODER):
        for first, second, what in METHOD_PAIRS:
            add(first + suffix, second + suffix, f"{first}{suffix} minus {second}{suffix} ({what})")
    for method in METHODS:
        add(method + WITH_DECODER, method, f"{method}{WITH_DECODER} minus {method} (decoder top)")
    return rows


def identity_column(character: Character) -> str:
    """The identity column: bob's judge-read look, or the character's identity label."""
    return BOB if character.name == "bob" else character.identity


def write_concepts_report(
    config: ConceptEvalConfig,
    out: Path,
    model_id: str,
    judge_id: str,
    character: Character,
    shots: list[ConceptShot],
    rows: dict[str, dict[str, list[np.ndarray]]],
    ceiling: dict[str, dict[str, np.ndarray]],
    examples: dict[str, list],
    seconds: dict[str, float],
    other: tuple[Path, dict[str, dict[str, np.ndarray]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    identity = identity_column(character)
    stacked = {label: {k: np.stack(v, axis=1) for k, v in r.items()} for label, r in rows.items()}
    judged = list(character.judged)
    signature = [SIGNATURE] if character.signature else []
    columns = [*judged, *signature, identity, "background", "motion", ALIGNED, "camera", IOU]
    main = Table(
        f"Concepts ({character.name}): {config.shots} shots x {config.training_seeds} training "
        "seeds (methods) or sampling seeds (baselines)",
        columns,
        {label: {c: mean_interval(v[c]) for c in columns} for label, v in stacked.items()},
        note=f"share of renders the judge reads as {character.name}'s "
        f"{', '.join(judged)}{' with its colour signature' if signature else ''} (identity, "
        "read anywhere in the frame), on the prompt's ground and with the guide's motion "
        "(alignment) and camera; object IoU with the guide's mask",
    )
    tables = [main]
    words = f"baseline: {character.name} spelled out in words"
    reference = stacked.get(words)
    compared = [m for m in config.methods if m in stacked]
    if reference is not None and compared:
        tables.append(
            Table(
                f"Each method minus {character.name} spelled out in words (paired by shot, seed)",
                [identity, ALIGNED, IOU],
                {
                    m: {
                        c: paired_difference(stacked[m][c], reference[c])
                        for c in (identity, ALIGNED, IOU)
                    }
                    for m in compared
                },
            )
        )
    differences = method_differences(stacked, [identity, ALIGNED, IOU])
    if differences:
        tables.append(
            Table(
                "What each ingredient adds: one method minus another (paired by shot, seed)",
                [identity, ALIGNED, IOU],
                differences,
                note="the paper's ordering is TimeInv + LoRA >= TimeInv > TI > none on identity "
                "with alignment held; a difference whose interval holds 0 is not a difference",
            )
        )
    against: dict[str, dict[str, Any]] | None = None
    if other is not None:
        other_out, other_rows, changed = other
        what = "; ".join(
            f"{k} {here!r} here, {there!r} there" for k, (there, here) in changed.items()
        )
        against = {
            f"{label} minus {label} in {other_out.name}": {
                c: paired_difference(stacked[label][c], other_rows[label][c])
                for c in (identity, ALIGNED, IOU)
            }
            for label in stacked
            if label in other_rows
        }
        tables.append(
            Table(
                f"This run minus {other_out} (paired by shot, seed)",
                [identity, ALIGNED, IOU],
                against,
                note=f"the two runs differ in: {what or 'nothing recorded'}",
            )
        )
    kept = [*judged, *signature, identity]
    tables.append(
        Table(
            f"What the model can show of {character.name}: its images held still, as drawn and "
            "through the model's autoencoder",
            kept,
            {label: {c: mean_interval(v[c]) for c in kept} for label, v in ceiling.items()},
            note="no render shows more of the character than its decoder keeps: the "
            "autoencoder row bounds the plain rows, a decoder-top row the +decoder rows",
        )
    )
    grid = Grid(
        f"First {GRID_SHOTS} shots, seed 0",
        [(label, list(clips)) for label, clips in examples.items()],
    )
    summary = {
        "area": "concepts",
        "character": character.name,
        "model_id": model_id,
        "judge_id": judge_id,
        "config": asdict(config),
        "shot_seeds": [shots[0].seed, shots[-1].seed + 1],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        character.name: {label: main.rows[label][identity]["mean"] for label in stacked},
        "identity": {label: main.rows[label][identity] for label in stacked},
        "alignment": {label: main.rows[label][ALIGNED] for label in stacked},
        "ceiling": {label: tables[-1].rows[label][identity] for label in ceiling},
        "differences": {title: row[identity] for title, row in differences.items()},
    }
    if against is not None:
        summary["against"] = {
            title: {c: row[c] for c in (identity, ALIGNED)} for title, row in against.items()
        }
    paths = write_report(out, f"Concepts ({character.name}): {model_id}", summary, tables, [grid])
    return {**paths, **summary}
