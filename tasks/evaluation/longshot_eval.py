"""`story eval longshot`: are Reuse-and-Diffuse seams invisible, measured by warp error?

A long shot is rendered clip by clip on the exact depth of a long world scene (seeds of the
split's "longshots" block), with each continuation setting and with independent windows (the
baseline: no continuation at all). At every seam the warp error of the frame pair that crosses
it is compared with the warp error inside the clips; motion is reported too, so a continuation
that freezes at its seams does not pass. The real clip, which has no seams, is measured at the
same frame positions (its ratio is the floor). The judge reads the look of each window: a shot
whose object changes colour or shape from one window to the next is not one shot.

The scene's own frames are the clip the depth came from, so `still_hold` (the product's default
since 2026-12-06) reads its still map from them, as the render path does from a retrieved clip;
`still_hold` 0 renders as the evaluation did before the hold existed, and finds those renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
UNHELD = "the default without still_hold (before it)"
PLAIN = "the default without deflicker (before it)"
LOOK = ("shape", "colour", "texture")


DEFAULT = "Reuse-and-Diffuse M=2 alpha=1 beta=0.6 (default)"
M1 = "Reuse-and-Diffuse M=1 alpha=1 beta=0.6"
PER_WINDOW = "M=2, warped noise drawn per window (before carry_warp)"
HOLD_PROMPT = "M=2, still cells held to the prompt frames (hold_prompt)"

SETTINGS: dict[str, ReuseDiffuse] = {
    DEFAULT: ReuseDiffuse(2, 1.0, 0.6),
    M1: ReuseDiffuse(1, 1.0, 0.6),
    PER_WINDOW: ReuseDiffuse(2, 1.0, 0.6, carry_warp=False),
    HOLD_PROMPT: ReuseDiffuse(2, 1.0, 0.6, hold_prompt=True),
}
"""Continuation settings scored beside independent windows: `PER_WINDOW` is the ablation of
`carry_warp` (one moving noise for the whole shot against one per window), `HOLD_PROMPT` the
trial of `hold_prompt` (still cells held across the seam; it holds only with `still_hold`)."""


LONG_SHOT_HOLD = SAMPLING_DEFAULTS["still_hold"] if CONTINUATION_DEFAULTS["long_hold"] else 0.0
"""The hold a long shot gets by default (none since `long_hold` came off; 1 holds)."""

NAMES = {"default": DEFAULT, "m1": M1, "per-window": PER_WINDOW, "hold-prompt": HOLD_PROMPT}
"""Short names of the settings for `story eval longshot --settings`."""


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
    still_hold: float = LONG_SHOT_HOLD
    deflicker: float = SAMPLING_DEFAULTS["deflicker"]
    """The delivered shot deflickered along its own motion (the product's default; seams
    included, independent windows one by one)."""
    settings: tuple[str, ...] = tuple(NAMES)
    """Which continuation settings to score (`NAMES`); independent windows and the real clip
    are always scored."""
    threads: int = 1


def _continuation_key(params: ReuseDiffuse) -> dict[str, Any]:
    """The continuation as a render's cache key names it: `hold_prompt` only when on, so
    renders made before it existed are found."""
    key = asdict(params)
    del key["long_hold"]  # the eval holds exactly when its still_hold is on (named below)
    if not key["hold_prompt"]:
        del key["hold_prompt"]
    return key


def sealed_name_knobs(still_hold: float = 0.0, deflicker: float = 0.0) -> dict[str, float]:
    """What names a sealed long-shot run beside the model id: the continuation defaults that
    changed (`FORMER_DEFAULTS`), at today's value, and `still_hold` when the run holds. Entries
    before `carry_warp` existed carry the bare model id (noise per window), and entries before
    the evaluation passed the scene's frames carry no `still_hold` (nothing was held), and entries
    before `deflicker` existed no `deflicker`."""
    knobs = {
        key: float(CONTINUATION_DEFAULTS[key])
        for key, former in FORMER_DEFAULTS.items()
        if key in CONTINUATION_DEFAULTS
        and CONTINUATION_DEFAULTS[key] != former
        and key != "long_hold"  # the run names its hold as still_hold
    }
    if still_hold:
        knobs["still_hold"] = float(still_hold)
    if deflicker:
        knobs["deflicker"] = float(deflicker)
    return knobs


def _held(config: LongShotEvalConfig, frames: np.ndarray) -> dict[str, Any]:
    """The hold's arguments for a render of `frames` (nothing when the run does not hold)."""
    if not config.still_hold:
        return {"still_hold": 0.0}
    return {"still_hold": config.still_hold, "guide_frames": frames}


def _independent(
    model, prompt: str, guide: np.ndarray, frames: np.ndarray, seed: int, config
) -> np.ndarray:
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
                deflicker=config.deflicker,
                **_held(config, frames[start : start + length]),
            )
            for i, start in enumerate(range(0, len(guide), length))
        ]
    )


def _deflickered(shot: np.ndarray, setting: str, strength: float, length: int) -> np.ndarray:
    """A rendered shot as `synthesize` delivers it with `deflicker` `strength`: the whole shot
    at once, or window by window for independent windows (each window is its own render)."""
    from story.models.deflicker import deflicker

    if not strength:
        return shot
    if setting != INDEPENDENT:
        return deflicker(shot, strength)
    return np.concatenate(
        [deflicker(shot[s : s + length], strength) for s in range(0, len(shot), length)]
    )


def _render(
    model,
    label: str,
    prompt: str,
    guide: np.ndarray,
    frames: np.ndarray,
    seed: int,
    config: LongShotEvalConfig,
) -> np.ndarray:
    """One long shot with one setting (or as independent windows); `frames` the scene's own
    frames, the clip `guide` was read from."""
    from story.tasks.render.synthesize import synthesize

    if label == INDEPENDENT:
        return _independent(model, prompt, guide, frames, seed, config)
    return synthesize(
        model,
        prompt,
        guide,
        seed=seed,
        steps=config.steps,
        guidance=config.guidance,
        noise_warp=config.noise_warp,
        deflicker=config.deflicker,
        continuation=replace(SETTINGS[label], long_hold=bool(config.still_hold)),
        **_held(config, frames),
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
    unknown = sorted(set(config.settings) - set(NAMES))
    if unknown or DEFAULT not in [NAMES[n] for n in config.settings if n in NAMES]:
        raise ValueError(
            f"long-shot settings must include 'default' and come from {', '.join(NAMES)}; "
            f"got {', '.join(config.settings)}"
        )
    chosen = {NAMES[n]: SETTINGS[NAMES[n]] for n in NAMES if n in config.settings}
    seams_of = {INDEPENDENT: list(range(cfg.frames, total, cfg.frames))}
    for label, params in chosen.items():
        starts = clip_starts(total, cfg.frames, params.prompt_frames)
        seams_of[label] = [start + cfg.frames for start in starts[:-1]]
    # With the hold on, the default is also scored without it (the renders of a run at 0 are
    # found in the same folder), so the report pairs the hold's effect on the same shots.
    runs = {label: (label, config) for label in [*chosen, INDEPENDENT]}
    if HOLD_PROMPT in runs and not config.still_hold:
        runs[HOLD_PROMPT] = (DEFAULT, config)  # nothing to hold: it is the default's render
    if config.still_hold:
        runs[UNHELD] = (DEFAULT, replace(config, still_hold=0.0))
        seams_of[UNHELD] = seams_of[DEFAULT]
    if config.deflicker:  # the same shots before the pass: found, not rendered again
        runs[PLAIN] = (DEFAULT, replace(config, deflicker=0.0))
        seams_of[PLAIN] = seams_of[DEFAULT]
    scores: dict[str, dict[str, list]] = {}
    examples: dict[str, np.ndarray] = {}
    renders = ShotCache(Path(out) / "renders")  # every shot kept, so a stopped run resumes
    for label, (setting, run) in runs.items():
        rows: dict[str, list] = {"seam": [], "within": [], "seam_motion": [], "within_motion": []}
        rows["same look"] = []
        for scene in scenes:
            guide = miniworld_structure(scene.depth)
            per_seed = []
            for seed in range(config.seeds):
                identity = {
                    "model": model.model_id,
                    "setting": setting,
                    "continuation": _continuation_key(SETTINGS[setting])
                    if setting in SETTINGS
                    else None,
                    "scene": asdict(scene.spec),
                    "seed": seed,
                    "steps": run.steps,
                    "guidance": run.guidance,
                    "noise_warp": run.noise_warp,
                    # named only when on, so renders made before the hold are found at 0
                    **({"still_hold": run.still_hold} if run.still_hold else {}),
                }
                plain_key = sha256_json(identity)
                # deflicker, named only when on, acts on the finished shot alone: the shot
                # without it is rendered (or found) and kept, and the pass applied to it
                key = (
                    sha256_json({**identity, "deflicker": run.deflicker})
                    if run.deflicker
                    else plain_key
                )
                shot = renders.get(key)
                if shot is None:
                    plain = renders.get(plain_key)
                    if plain is None:
                        bare = replace(run, deflicker=0.0)
                        plain = _render(model, setting, scene.caption, guide, scene.rgb, seed, bare)
                        renders.put(plain_key, plain)
                    shot = _deflickered(plain, setting, run.deflicker, cfg.frames)
                    if run.deflicker:
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
        t = seam_temporal(scene.rgb, seams_of[DEFAULT])
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
            for label in chosen
        },
    )
    pairs = {
        "carry_warp: the default minus warped noise drawn per window": (DEFAULT, PER_WINDOW),
        "hold_prompt: held to the prompt frames minus the default": (HOLD_PROMPT, DEFAULT),
    }
    if config.still_hold:
        pairs["still_hold: the default minus the same without the hold"] = (DEFAULT, UNHELD)
    if config.deflicker:
        pairs["deflicker: the default minus the same without the pass"] = (DEFAULT, PLAIN)
    pairs = {name: pair for name, pair in pairs.items() if set(pair) <= set(scores)}
    parts = {
        "seam warp error": "seam",
        "within warp error": "within",
        "seam motion": "seam_motion",
        "within motion": "within_motion",
    }

    def relative(a: str, b: str, part: str) -> dict[str, float | bool]:
        """a - b as a fraction of b's mean, paired (so a 0.3% change reads as 0.003)."""
        after, before = np.array(scores[a][part], float), np.array(scores[b][part], float)
        scale = float(before.mean()) or 1.0
        return paired_difference(after / scale, before / scale)

    carry = Table(
        "Each change against the setting without it, as a fraction of that setting's mean "
        "(paired by shot and seed; same look in shots)",
        [*parts, "same look"],
        {
            name: {
                **{column: relative(a, b, part) for column, part in parts.items()},
                "same look": paired_difference(
                    np.array(scores[a]["same look"], float), np.array(scores[b]["same look"], float)
                ),
            }
            for name, (a, b) in pairs.items()
        },
        note="hold_prompt holds only where still_hold holds: without the hold it renders as "
        "the default",
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
