"""`story eval concepts`: does a trained character look like itself and follow its guide?

The example character bob (a red striped sphere, datasets/concepts/bob) is trained with each
method once per training seed and rendered as "a <bob> <ground>" on every shot of the split
(`concept_shots`). The judge reads the render: is it a red striped sphere (bob), on the prompt's
ground, moving like the guide; the main-object IoU with the guide says whether it sits where the
guide puts it. Baselines rendered with as many sampling seeds: no concept (the untrained token),
the class word alone ("a sphere"), and bob spelled out in words ("a red striped sphere").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.tasks.concepts.methods import DEFAULT_REG_CLIPS, DEFAULT_STEPS
from story.tasks.evaluation.clip_scores import IOU, score_clips
from story.tasks.evaluation.concept_shots import ConceptShot, concept_shots, regularization_seeds
from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.evaluation.report import Grid, Table, write_report
from story.tasks.world import miniworld, splits
from story.tasks.world.captions import BACKGROUND_WORDS

CHARACTER = {"shape": "sphere", "colour": "red", "texture": "striped"}
BOB = "bob (all three)"
COLUMNS = ("shape", "colour", "texture", BOB, "background", "motion", "camera", IOU)
BASELINES = {
    "baseline: no concept (untrained token)": "a <bob> {ground}",
    "baseline: class word only": "a sphere {ground}",
    "baseline: bob spelled out in words": "a red striped sphere {ground}",
}


@dataclass
class ConceptEvalConfig:
    """What `story eval concepts` scores."""

    split: str = splits.VALIDATION
    checkpoint: str = "tiny"
    shots: int = 32
    training_seeds: int = 3
    methods: list[str] = field(default_factory=lambda: ["timeinv_lora", "timeinv"])
    train_steps: int = DEFAULT_STEPS
    sample_steps: int = 20
    reg_clips: int = DEFAULT_REG_CLIPS
    threads: int = 1


def _prompt(template: str, shot: ConceptShot) -> str:
    return template.format(ground=BACKGROUND_WORDS[shot.background][0])


def _render(model, template: str, shots: list[ConceptShot], seed: int, steps: int) -> list:
    from story.tasks.render.synthesize import synthesize

    return [
        synthesize(model, _prompt(template, s), s.guide, seed=seed * 1009 + i, steps=steps)
        for i, s in enumerate(shots)
    ]


def _score(reader: JudgeReader, renders: list, shots: list[ConceptShot]) -> dict[str, np.ndarray]:
    targets = [
        {**CHARACTER, "background": s.background, "motion": s.motion, "camera": s.camera}
        for s in shots
    ]
    scores, _ = score_clips(reader, renders, targets, [s.mask for s in shots])
    scores[BOB] = scores["shape"] * scores["colour"] * scores["texture"]
    return scores


def _regularization(model, count: int, depth) -> list:
    from story.tasks.concepts.training_data import TrainingClip

    cfg = model.config
    clips = []
    for seed in regularization_seeds(count):
        spec = miniworld.sample_scene(
            seed, frames=cfg.frames, height=cfg.height, width=cfg.width, n_objects=1, shape="sphere"
        )
        clips.append(
            TrainingClip.from_frames(
                miniworld.render(spec).rgb, miniworld.make_caption(spec), depth
            )
        )
    return clips


def evaluate_concepts(
    config: ConceptEvalConfig,
    out: str | Path,
    checkpoints: str | Path,
    images: str | Path,
    judge_folder: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, render and score every method and baseline; write the report into `out`."""
    from story.tasks.concepts.params import ConceptParams
    from story.tasks.concepts.runtime import load_concepts, unload_concepts
    from story.tasks.concepts.trainer import default_depth, train_concept
    from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
    from story.tasks.provenance.checkpoint_identity import model_fingerprint
    from story.tasks.render.synthesize import load_t2v

    started = time.monotonic()
    torch.set_num_threads(config.threads)
    model = load_t2v(eval_checkpoint(config.checkpoint, checkpoints), device="cpu")
    reader = JudgeReader.load(judge_folder)
    cfg = model.config
    shots = concept_shots(config.split, config.shots, cfg.frames, cfg.height)
    depth = default_depth(checkpoints)
    regularization = _regularization(model, config.reg_clips, depth)
    fingerprint = model_fingerprint(model)
    rows: dict[str, dict[str, list[np.ndarray]]] = {}
    examples: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for method in ["none", *config.methods]:
        label = next(iter(BASELINES)) if method == "none" else method
        tick = time.monotonic()
        for seed in range(config.training_seeds):
            params = ConceptParams(
                method=method, steps=config.train_steps, seed=seed, threads=config.threads
            )
            trained = train_concept(
                model,
                "bob",
                images,
                "sphere",
                params,
                depth=depth,
                regularization=regularization if params.uses_lora else (),
                base_checkpoint=fingerprint,
            )
            load_concepts(model, {"bob": trained.pack})
            renders = _render(model, "a <bob> {ground}", shots, seed, config.sample_steps)
            unload_concepts(model)
            examples.setdefault(label, renders)
            for key, value in _score(reader, renders, shots).items():
                rows.setdefault(label, {}).setdefault(key, []).append(value)
            log(f"concepts: {label} seed {seed} ({time.monotonic() - tick:.0f}s)")
        seconds[label] = round(time.monotonic() - tick, 1)
    for label, template in list(BASELINES.items())[1:]:
        tick = time.monotonic()
        for seed in range(config.training_seeds):
            renders = _render(model, template, shots, seed, config.sample_steps)
            examples.setdefault(label, renders)
            for key, value in _score(reader, renders, shots).items():
                rows.setdefault(label, {}).setdefault(key, []).append(value)
        seconds[label] = round(time.monotonic() - tick, 1)
        log(f"concepts: {label} ({seconds[label]}s)")
    stacked = {label: {k: np.stack(v, axis=1) for k, v in r.items()} for label, r in rows.items()}
    main = Table(
        f"Concepts: {config.shots} shots x {config.training_seeds} training seeds (methods) or "
        "sampling seeds (baselines)",
        list(COLUMNS),
        {label: {c: mean_interval(v[c]) for c in COLUMNS} for label, v in stacked.items()},
        note="judge-read share of renders showing bob's shape, colour, texture (and all three), "
        "the prompt's ground, the guide's motion and camera; object IoU with the guide's mask",
    )
    spelled = stacked[list(BASELINES)[2]]
    diffs = Table(
        "Each method minus bob spelled out in words (paired by shot and seed)",
        [BOB, IOU],
        {
            m: {c: paired_difference(stacked[m][c], spelled[c]) for c in (BOB, IOU)}
            for m in config.methods
        },
    )
    grid = Grid(
        "First 6 shots, seed 0",
        [(label, list(clips[:6])) for label, clips in examples.items()],
    )
    summary = {
        "area": "concepts",
        "model_id": model.model_id,
        "judge_id": reader.model_id,
        "config": asdict(config),
        "shot_seeds": [shots[0].seed, shots[-1].seed + 1],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": {**seconds, "total": round(time.monotonic() - started, 1)},
        "bob": {label: main.rows[label][BOB]["mean"] for label in stacked},
    }
    paths = write_report(out, f"Concepts: {model.model_id}", summary, [main, diffs], [grid])
    return {**paths, **summary}
