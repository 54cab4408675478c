"""How well the judge itself reads real clips: accuracy per attribute and main-object mask IoU.

Scored on validation clips while training (recipe and step choices) and once on sealed test
clips per shipped judge. Clips can be rendered at the size a synthesis model renders (e.g. the
old 32x32 x 8): that row is the ceiling a perfect render of that model could reach.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from story.tasks.evaluation.intervals import mean_interval
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.evaluation.report import Grid, Table, write_report
from story.tasks.training.judge_data import (
    ATTRIBUTES,
    Augmentation,
    JudgeClips,
    augment,
    render_judge_clips,
)
from story.tasks.world import miniworld, splits

MASK_THRESHOLD = 0.5


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two (T, H, W) masks over the whole clip; 1.0 when both are empty."""
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


def judge_scores(reader: JudgeReader, clips: JudgeClips) -> dict[str, np.ndarray]:
    """Per clip: 1/0 correct for every attribute, and the main-object mask IoU."""
    reading = reader.read(clips.rgb)
    out = {}
    for name in ATTRIBUTES:
        truth = [reader.vocab[name][i] for i in clips.labels[name]]
        out[name] = np.array(
            [float(a == b) for a, b in zip(reading.labels[name], truth, strict=True)]
        )
    masks = reader.masks(clips.rgb)
    out["mask_iou"] = np.array(
        [mask_iou(m > MASK_THRESHOLD, t) for m, t in zip(masks, clips.masks, strict=True)]
    )
    return out


def judge_report(
    reader: JudgeReader,
    split: str,
    count: int,
    sizes: tuple[tuple[int, int], ...] = ((16, 64), (8, 32)),
    start: int = 0,
) -> dict[str, dict]:
    """Accuracy (with 95% intervals) per attribute on `count` real clips of `split`, rendered at
    each (frames, size) in `sizes`."""
    seeds = splits.seeds(split, "judge", count, start=start)
    report = {}
    for frames, size in sizes:
        clips = render_judge_clips(seeds, frames, size, allowed=(split,))
        scores = judge_scores(reader, clips)
        report[f"{size}x{size}x{frames}"] = {
            name: mean_interval(values) for name, values in scores.items()
        }
    return report


DEGRADATIONS: dict[str, dict[str, float]] = {
    "blur": {"blur": 1.0},
    "noise": {"noise": 1.0},
    "jpeg": {"jpeg": 1.0},
    "half size": {"half_size": 1.0},
    "8 frames stretched to 16": {"eight_frames": 1.0},
    "all of them": {"blur": 1.0, "noise": 1.0, "jpeg": 1.0, "half_size": 1.0, "eight_frames": 1.0},
}


def _degraded(clips: JudgeClips, setting: dict[str, float], seed: int) -> JudgeClips:
    video, _, _ = augment(
        clips, np.random.default_rng(seed), replace(Augmentation.none(), **setting)
    )
    rgb = ((video + 1.0) * 127.5).round().clamp(0, 255).byte().permute(0, 1, 3, 4, 2).numpy()
    return replace(clips, rgb=rgb)


def _majority(clips: JudgeClips, vocab: dict[str, list[str]]) -> dict[str, dict]:
    """The trivial baseline: always answer the split's most frequent class."""
    out = {}
    for name in ATTRIBUTES:
        counts = np.bincount(clips.labels[name], minlength=len(vocab[name]))
        out[name] = mean_interval((clips.labels[name] == counts.argmax()).astype(float))
    return out


def evaluate_judge(
    reader: JudgeReader, split: str, count: int, out: str | Path, degraded: int = 200
) -> dict:
    """The judge's report: accuracy per attribute on `count` real clips of `split` at its own
    size and at the old synthesis size, by objects in the scene, and on the first `degraded`
    clips under each degradation, beside the most-frequent-class baseline."""
    seeds = splits.seeds(split, "judge", count)
    columns = [*ATTRIBUTES, "mask_iou"]
    rows: dict[str, dict] = {}
    native = render_judge_clips(seeds, 16, 64, allowed=(split,))
    rows["most frequent class (baseline)"] = _majority(native, reader.vocab)
    scores = judge_scores(reader, native)
    rows["real clips 64x64 x 16"] = {k: mean_interval(v) for k, v in scores.items()}
    small = render_judge_clips(seeds, 8, 32, allowed=(split,))
    rows["real clips 32x32 x 8"] = {
        k: mean_interval(v) for k, v in judge_scores(reader, small).items()
    }
    objects = np.array([len(miniworld.sample_scene(s).objects) for s in seeds])
    by_objects = {
        f"{k} object{'s' if k > 1 else ''} ({int((objects == k).sum())} clips)": {
            name: mean_interval(v[objects == k]) for name, v in scores.items()
        }
        for k in (1, 2, 3)
        if (objects == k).any()
    }
    first = JudgeClips(
        native.rgb[:degraded],
        native.masks[:degraded],
        {k: v[:degraded] for k, v in native.labels.items()},
        native.seeds[:degraded],
    )
    robust = {
        "64x64 x 16, clean": {k: mean_interval(v[:degraded]) for k, v in scores.items()},
        **{
            f"64x64 x 16, {label}": {
                k: mean_interval(v) for k, v in judge_scores(reader, _degraded(first, s, 0)).items()
            }
            for label, s in DEGRADATIONS.items()
        },
    }
    tables = [
        Table(f"Judge accuracy on real {split} clips ({count})", columns, rows),
        Table("By objects in the scene (the captions describe objects[0])", columns, by_objects),
        Table(
            f"Robustness: the first {len(first.seeds)} clips degraded the way renders are",
            columns,
            robust,
        ),
    ]
    reading = reader.read(native.rgb[:8])
    grid = Grid(
        "First 8 clips with what the judge read",
        [(", ".join(reading.row(i).values()), [clip]) for i, clip in enumerate(native.rgb[:8])],
        frames=6,
    )
    accuracy = {k: v["mean"] for k, v in rows["real clips 64x64 x 16"].items()}
    summary = {
        "area": "judge",
        "model_id": reader.model_id,
        "split": split,
        "clips": count,
        "seeds": [seeds[0], seeds[-1] + 1],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "accuracy": accuracy,
        "target_met": all(accuracy[name] >= 0.95 for name in ATTRIBUTES),
    }
    paths = write_report(out, f"Judge evaluation: {reader.model_id}", summary, tables, [grid])
    return {**paths, **summary}
