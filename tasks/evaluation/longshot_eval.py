"""`story eval longshot`: are Reuse-and-Diffuse seams invisible, measured by warp error?

A long shot is rendered clip by clip on the exact depth of a long world scene (seeds of the
split's "longshots" block), with each continuation setting and with independent windows (the
baseline: no continuation at all). At every seam the warp error of the frame pair that crosses
it is compared with the warp error inside the clips; motion is reported too, so a continuation
that freezes at its seams does not pass. The real clip, which has no seams, is measured at the
same frame positions (its ratio is the floor). The judge reads the look of each window: a shot
whose object changes colour or shape from one window to the next is not one shot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.models.long_shot import CONTINUATION_DEFAULTS, ReuseDiffuse, clip_starts
from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS
from story.tasks.evaluation.intervals import mean_interval, paired_difference, ratio_interval
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.evaluation.report import Grid, Table, write_report
from story.tasks.evaluation.temporal import seam_temporal
from story.tasks.hashing import sha256_json
from story.tasks.render.shot_cache import ShotCache
from story.tasks.training.t2v_data import miniworld_structure
from story.tasks.world import miniworld, splits

INDEPENDENT = "baseline: independent windows"
REAL = "real clip (no seams)"
LOOK = ("shape", "colour", "texture")


@dataclass
class LongShotEvalConfig:
    """What `story eval longshot` scores."""

    split: str = splits.VALIDATION
    checkpoint: str = "tiny"
    shots: int = 24
    seeds: int = 2
    windows: int = 3
    steps: int = 20
    guidance: float = SAMPLING_DEFAULTS["guidance"]
    noise_warp: float = SAMPLING_DEFAULTS["noise_warp"]
    threads: int = 1


SETTINGS: dict[str, ReuseDiffuse] = {
    "Reuse-and-Diffuse M=2 alpha=1 beta=0.6 (default)": ReuseDiffuse(2, 1.0, 0.6),
    "Reuse-and-Diffuse M=1 alpha=1 beta=0.6": ReuseDiffuse(1, 1.0, 0.6),
    "M=2, warped noise drawn per window (before carry_warp)": ReuseDiffuse(
        2, 1.0, 0.6, carry_warp=False
    ),
}
"""Continuation settings scored beside independent windows; the last is the ablation of
`carry_warp` (one moving noise for the whole shot against one per window)."""


def sealed_name_knobs() -> dict[str, float]:
    """What names a sealed long-shot run beside the model id: the continuation defaults that
    changed (`FORMER_DEFAULTS`), at today's value. Entries before `carry_warp` existed carry the
    bare model id (noise per window)."""
    return {
        key: float(CONTINUATION_DEFAULTS[key])
        for key, former in FORMER_DEFAULTS.items()
        if key in CONTINUATION_DEFAULTS and CONTINUATION_DEFAULTS[key] != former
    }


def _independent(model, prompt: str, guide: np.ndarray, seed: int, config) -> np.ndarray:
    from story.tasks.render.synthesize import synthesize

    length = model.config.frames
    return np.concatenate(
        [
            synthesize(
                model,
                prompt,
                guide[start : start + length],
                seed=seed * 97 + i,
                steps=config.steps,
                guidance=config.guidance,
                noise_warp=config.noise_warp,
            )
            for i, start in enumerate(range(0, len(guide), length))
        ]
    )


def _render(
    model, label: str, prompt: str, guide: np.ndarray, seed: int, config: LongShotEvalConfig
) -> np.ndarray:
    """One long shot with one setting (or as independent windows)."""
    from story.tasks.render.synthesize import synthesize

    if label == INDEPENDENT:
        return _independent(model, prompt, guide, seed, config)
    return synthesize(
        model,
        prompt,
        guide,
        seed=seed,
        steps=config.steps,
        guidance=config.guidance,
        noise_warp=config.noise_warp,
        continuation=SETTINGS[label],
    )


def _window_looks(reader: JudgeReader, shot: np.ndarray, length: int) -> float:
    """1 when the judge reads the same shape, colour and texture in every window of the shot."""
    windows = [shot[s : s + length] for s in range(0, len(shot) - length + 1, length)]
    reading = reader.read(windows)
    return float(all(len(set(reading.labels[name])) == 1 for name in LOOK))


def evaluate_longshot(
    config: LongShotEvalConfig,
    out: str | Path,
    checkpoints: str | Path,
    judge_folder: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Render and score every shot with every setting; write the report into `out`."""
    from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
    from story.tasks.render.synthesize import load_t2v

    started = time.monotonic()
    torch.set_num_threads(config.threads)
    model = load_t2v(eval_checkpoint(config.checkpoint, checkpoints), device="cpu")
    reader = JudgeReader.load(judge_folder)
    cfg = model.config
    total = config.windows * cfg.frames
    scenes = [
        miniworld.render(
            miniworld.sample_scene(
                splits.require(seed, config.split), frames=total, height=cfg.height, width=cfg.width
            )
        )
        for seed in splits.seeds(config.split, "longshots", config.shots)
    ]
    seams_of = {INDEPENDENT: list(range(cfg.frames, total, cfg.frames))}
    for label, params in SETTINGS.items():
        starts = clip_starts(total, cfg.frames, params.prompt_frames)
        seams_of[label] = [start + cfg.frames for start in starts[:-1]]
    scores: dict[str, dict[str, list]] = {}
    examples: dict[str, np.ndarray] = {}
    renders = ShotCache(Path(out) / "renders")  # every shot kept, so a stopped run resumes
    for label in [*SETTINGS, INDEPENDENT]:
        rows: dict[str, list] = {"seam": [], "within": [], "seam_motion": [], "within_motion": []}
        rows["same look"] = []
        for scene in scenes:
            guide = miniworld_structure(scene.depth)
            per_seed = []
            for seed in range(config.seeds):
                key = sha256_json(
                    {
                        "model": model.model_id,
                        "setting": label,
                        "continuation": asdict(SETTINGS[label]) if label in SETTINGS else None,
                        "scene": asdict(scene.spec),
                        "seed": seed,
                        "steps": config.steps,
                        "guidance": config.guidance,
                        "noise_warp": config.noise_warp,
                    }
                )
                shot = renders.get(key)
                if shot is None:
                    shot = _render(model, label, scene.caption, guide, seed, config)
                    renders.put(key, shot)
                examples.setdefault(label, shot)
                per_seed.append((seam_temporal(shot, seams_of[label]), shot))
            rows["seam"].append([t["seam_warp_error"] for t, _ in per_seed])
            rows["within"].append([t["within_warp_error"] for t, _ in per_seed])
            rows["seam_motion"].append([t["seam_motion"] for t, _ in per_seed])
            rows["within_motion"].append([t["within_motion"] for t, _ in per_seed])
            rows["same look"].append([_window_looks(reader, s, cfg.frames) for _, s in per_seed])
        scores[label] = rows
        log(f"longshot: {label} done ({time.monotonic() - started:.0f}s)")
    real = {k: [] for k in ("seam", "within", "seam_motion", "within_motion")}
    for scene in scenes:
        t = seam_temporal(scene.rgb, seams_of[next(iter(SETTINGS))])
        for key, name in (("seam", "seam_warp_error"), ("within", "within_warp_error")):
            real[key].append([t[name]])
        real["seam_motion"].append([t["seam_motion"]])
        real["within_motion"].append([t["within_motion"]])
    real["same look"] = [[_window_looks(reader, s.rgb, cfg.frames)] for s in scenes]
    scores[REAL] = real
    columns = ["seam / within warp error", "seam warp error", "within warp error"]
    columns += ["seam / within motion", "same look in every window"]
    table = Table(
        f"Long shots: {config.shots} shots x {config.seeds} seeds, {total} frames each",
        columns,
        {
            label: {
                columns[0]: ratio_interval(np.array(r["seam"]), np.array(r["within"])),
                columns[1]: mean_interval(np.array(r["seam"])),
                columns[2]: mean_interval(np.array(r["within"])),
                columns[3]: ratio_interval(
                    np.array(r["seam_motion"]), np.array(r["within_motion"])
                ),
                columns[4]: mean_interval(np.array(r["same look"])),
            }
            for label, r in scores.items()
        },
        note="ratio of means over shots; a seam is invisible when its warp error matches the "
        "warp error inside clips (the real clip's ratio) and motion does not stop at it",
    )
    base = np.array(scores[INDEPENDENT]["seam"])
    diffs = Table(
        "Seam warp error: each setting minus independent windows (paired by shot and seed)",
        ["seam warp error"],
        {
            label: {"seam warp error": paired_difference(np.array(scores[label]["seam"]), base)}
            for label in SETTINGS
        },
    )
    default, ablation = list(SETTINGS)[0], list(SETTINGS)[-1]
    carry = Table(
        "carry_warp: the default minus the same setting with warped noise drawn per window "
        "(paired by shot and seed)",
        ["seam warp error", "within warp error"],
        {
            default: {
                f"{part} warp error": paired_difference(
                    np.array(scores[default][part]), np.array(scores[ablation][part])
                )
                for part in ("seam", "within")
            }
        },
    )
    grid = Grid(
        "First shot, seed 0 (rows: settings, then the real clip)",
        [(label, [clip]) for label, clip in examples.items()] + [(REAL, [scenes[0].rgb])],
        frames=total,
    )
    summary = {
        "area": "longshot",
        "model_id": model.model_id,
        "judge_id": reader.model_id,
        "config": asdict(config),
        "seams": seams_of,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "seam_ratio": {label: cells[columns[0]]["ratio"] for label, cells in table.rows.items()},
    }
    paths = write_report(
        out, f"Long shots: {model.model_id}", summary, [table, diffs, carry], [grid]
    )
    return {**paths, **summary}
