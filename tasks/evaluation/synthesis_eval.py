"""`story eval synthesis`: a synthesis checkpoint scored by the judge, with baselines and intervals.

Renders every case (`synthesis_cases`) once per sampling seed with structure guidance and from
text alone, scores them and the baselines with `clip_scores.score_clips` (the bundled depth net
is the depth probe: a render's estimated depth against its guide), and writes the report:
the production path (main table), the controlled case, paired differences, temporal ratios to
the real clip, retrieval, and the miniature FVD (real vs structure-guided vs text-only). The
report keeps every render's scores by case (`per_case`), so two checkpoints scored on the same
plots are compared case by case (`synthesis_compare`).
Renders are kept under the output folder, one file per render (`synthesis_renders`), so an
interrupted run resumes at the render it stopped at, and `workers` processes render in parallel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS, implied_knobs
from story.tasks.evaluation.clip_scores import score_clips
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.evaluation.report import Grid, write_report
from story.tasks.evaluation.synthesis_cases import SynthesisCase, controlled_cases, production_cases
from story.tasks.evaluation.synthesis_renders import (
    OFF_WHEN_UNNAMED,
    RenderJob,
    ensure_renders,
    load_renders,
    render_job,
)
from story.tasks.evaluation.synthesis_tables import case_tables, guide_frames
from story.tasks.world import splits

GUIDED, TEXT_ONLY = "structure-guided", "text-only"
BASELINES = {
    "baseline: background only (no object)": "background_only",
    "baseline: guide clip, first frame frozen": "frozen",
    "baseline: guide clip as is": "clip",
}
CEILING = "real clip with the prompt's look (ceiling)"
REAL_AGAIN = "real: another take of the same plot"


STRUCTURE_KNOBS = ("tau", "strength", "detail", "still_hold", "pixel_hold")
SWEEPABLE = (
    *STRUCTURE_KNOBS,
    "temporal_guidance",
    "noise_share",
    "noise_warp",
    "flow_smoothing",
    "cross_frame",
    "deflicker",
)
INTEGER_KNOBS = tuple(k for k in SWEEPABLE if isinstance(SAMPLING_DEFAULTS[k], int))
NAMED_WHEN_SET = tuple(OFF_WHEN_UNNAMED)
"""Knobs added after renders were cached: a render names them only when they are set, so the
renders made before they existed are still found (off, they change nothing)."""


@dataclass
class SynthesisEvalConfig:
    """What `story eval synthesis` scores; defaults are the documented full run."""

    split: str = splits.VALIDATION
    checkpoint: str = "tiny"
    scenes: int = 200
    seeds: int = 3
    steps: int = 20
    guidance: float = SAMPLING_DEFAULTS["guidance"]
    library_clips: int = 1000
    controlled: bool = True
    threads: int = 1
    workers: int = 1
    """Processes that render (each loads the model, `threads` torch threads each)."""
    sampling: dict[str, float] = field(default_factory=dict)
    """Sampling knobs other than the defaults (tau, strength, detail, temporal_guidance,
    noise_share, noise_warp)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sampling) - set(SWEEPABLE))
        if unknown:
            raise ValueError(f"sampling knob(s) {unknown}: choose from {list(SWEEPABLE)}")


def sealed_knobs(
    sampling: dict[str, float], steps: int | None = None, guidance: float | None = None
) -> dict[str, float]:
    """The knobs that name a sealed run: what `sampling` renders at, beside the sampling the
    ledger's names meant before any default changed (`FORMER_DEFAULTS`). So `{}` and
    `noise_warp=0.8` name one configuration today, and `noise_warp=0` names the former default,
    already scored under the bare model id. DDIM steps and a guidance scale other than the
    evaluation's defaults (`SynthesisEvalConfig`: 20 steps, every sealed run so far) name their
    own configuration too."""
    changed = [k for k in FORMER_DEFAULTS if k in SAMPLING_DEFAULTS]  # one clip: no carry_warp
    settled = {**{k: SAMPLING_DEFAULTS[k] for k in changed}, **implied_knobs(sampling)}
    knobs = {k: v for k, v in settled.items() if FORMER_DEFAULTS.get(k, object()) != v}
    for key, value in (("steps", steps), ("guidance", guidance)):
        if value is not None and value != getattr(SynthesisEvalConfig, key):
            knobs[key] = value
    return knobs


def knobs_for(config: SynthesisEvalConfig, guided: bool) -> dict[str, float]:
    """Every sampling knob that changes a render of this condition, at the config's value or
    the default (so a render made under another default is never read back as this one);
    structure knobs do nothing without a guide, so text-only renders are shared across a
    structure sweep."""
    settled = {**{k: SAMPLING_DEFAULTS[k] for k in SWEEPABLE}, **implied_knobs(config.sampling)}
    return {
        k: int(v) if k in INTEGER_KNOBS else float(v)
        for k, v in sorted(settled.items())
        if (guided or k not in STRUCTURE_KNOBS) and (k not in NAMED_WHEN_SET or v)
    }


def _sample_seed(case: SynthesisCase, seed: int) -> int:
    return case.scene_seed * 16 + seed


def condition_jobs(
    model_id: str,
    cases: list[SynthesisCase],
    guided: bool,
    seed: int,
    config: SynthesisEvalConfig,
    cache: Path,
) -> list[RenderJob]:
    """One render job per case for one condition and sampling seed."""
    knobs = knobs_for(config, guided)
    folder = cache / ("guided" if guided else "text")
    return [
        render_job(
            folder,
            model_id,
            case.prompt,
            case.guide if guided else None,
            len(case.clip),
            _sample_seed(case, seed),
            config.steps,
            config.guidance,
            knobs,
            case.clip if guided else None,
        )
        for case in cases
    ]


def score_case_set(
    name: str,
    cases: list[SynthesisCase],
    model: Any,
    reader: JudgeReader,
    config: SynthesisEvalConfig,
    cache: Path,
    log: Callable[[str], None],
    depth: Callable[[np.ndarray], np.ndarray],
    checkpoint: Path,
) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
    """Scores (per metric: (N, seeds) for renders, (N, 1) for baselines), embeddings per row, the
    seconds spent, and the first seed's renders (for the grids). Every render is made first
    (`config.workers` processes load `checkpoint`), then read back and scored."""
    targets = [c.target for c in cases]
    masks = [c.guide_mask for c in cases]
    guides = [c.guide for c in cases]
    rows: dict[str, dict[str, np.ndarray]] = {}
    embeddings: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    first: dict[str, np.ndarray] = {}
    conditions = ((GUIDED, True), (TEXT_ONLY, False))
    jobs = {
        (guided, seed): condition_jobs(model.model_id, cases, guided, seed, config, cache / name)
        for seed in range(config.seeds)
        for _, guided in conditions
    }
    tick = time.monotonic()
    made = ensure_renders(
        model,
        checkpoint,
        [job for seed_jobs in jobs.values() for job in seed_jobs],
        workers=config.workers,
        threads=config.threads,
        log=log,
        label=f"{name}: renders",
    )
    seconds["renders"] = round(time.monotonic() - tick, 1)
    seconds["renders_made"] = made
    for label, guided in conditions:
        per_seed, tick = [], time.monotonic()
        for seed in range(config.seeds):
            renders = load_renders(jobs[guided, seed])
            first.setdefault(label, renders)
            scores, emb = score_clips(reader, list(renders), targets, masks, guides, depth)
            per_seed.append(scores)
            embeddings.setdefault(label, []).append(emb)
            log(f"{name}: {label} seed {seed} scored ({time.monotonic() - tick:.0f}s)")
        rows[label] = {k: np.stack([s[k] for s in per_seed], axis=1) for k in per_seed[0]}
        seconds[f"{label} scoring"] = round(time.monotonic() - tick, 1)
    for label, attribute in {**BASELINES, CEILING: "ideal", REAL_AGAIN: "another_take"}.items():
        clips = [c.frozen() if attribute == "frozen" else getattr(c, attribute) for c in cases]
        scores, emb = score_clips(reader, clips, targets, masks, guides, depth)
        rows[label] = {k: v[:, None] for k, v in scores.items()}
        embeddings[label] = [emb]
    return {"rows": rows, "embeddings": embeddings}, seconds, first


def evaluate_synthesis(
    config: SynthesisEvalConfig,
    out: str | Path,
    checkpoints: str | Path,
    workspace: str | Path,
    judge_folder: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole synthesis evaluation and write report.json / report.html into `out`."""
    from story.models.depth import load_depth_estimator
    from story.models.text_encoder import load_text_encoder
    from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
    from story.tasks.evaluation.eval_library import EvalLibrary
    from story.tasks.render.synthesize import load_t2v

    started, cpu_started = time.monotonic(), time.process_time()
    torch.set_num_threads(config.threads)
    out = Path(out)
    checkpoint = eval_checkpoint(config.checkpoint, checkpoints)
    model = load_t2v(checkpoint, device="cpu")
    reader = JudgeReader.load(judge_folder)
    depth = load_depth_estimator("tiny", checkpoints, device="cpu")
    frames, height, width = model.config.frames, model.config.height, model.config.width

    def estimate(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return depth.estimate(rgb, size=size)

    def probe(frames: np.ndarray) -> np.ndarray:
        return depth.estimate(frames, size=frames.shape[1:3])

    tick = time.monotonic()
    library = EvalLibrary(
        Path(workspace) / "eval" / "library",
        config.split,
        config.library_clips,
        load_text_encoder("minilm", device="cpu"),
    )
    sets = {
        "production": production_cases(
            config.split, config.scenes, library, estimate, frames, height, width
        )
    }
    if config.controlled:
        sets["controlled"] = controlled_cases(config.split, config.scenes, frames, height, width)
    seconds: dict[str, Any] = {"cases": round(time.monotonic() - tick, 1)}
    log(f"built {config.scenes} cases per set in {seconds['cases']}s")

    tables, grids, results = [], [], {}
    per_case: dict[str, Any] = {}
    for name, cases in sets.items():
        scored, spent, first = score_case_set(
            name, cases, model, reader, config, out / "renders", log, probe, checkpoint
        )
        seconds[name] = spent
        made, summary = case_tables(name, cases, scored, GUIDED, TEXT_ONLY, CEILING, REAL_AGAIN)
        tables += made
        results[name] = summary
        per_case[name] = {
            "scene_seeds": [c.scene_seed for c in cases],
            **{
                label: {k: v.round(6).tolist() for k, v in scored["rows"][label].items()}
                for label in (GUIDED, TEXT_ONLY)
            },
        }
        shown = cases[:6]
        grids.append(
            Grid(
                f"{name}: first {len(shown)} cases (sampling seed 0)",
                [
                    (
                        f"{c.scene_seed}: {c.prompt}",
                        [
                            c.clip,
                            guide_frames(c.guide),
                            c.ideal,
                            first[GUIDED][i],
                            first[TEXT_ONLY][i],
                        ],
                    )
                    for i, c in enumerate(shown)
                ],
                columns=["guide clip", "depth guide", "ideal (real)", GUIDED, TEXT_ONLY],
            )
        )
    seconds["total"] = round(time.monotonic() - started, 1)
    seconds["cpu"] = round(time.process_time() - cpu_started, 1)
    summary = {
        "area": "synthesis",
        "model_id": model.model_id,
        "judge_id": reader.model_id,
        "depth_model": depth.model_id,
        "config": asdict(config),
        "model_size": {"frames": frames, "height": height, "width": width},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        "results": results,
        "per_case": per_case,
    }
    paths = write_report(out, f"Synthesis evaluation: {model.model_id}", summary, tables, grids)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return {**paths, "model_id": model.model_id, "seconds": seconds, "results": results}
