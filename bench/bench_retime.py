"""Retiming to the delivery rate: hold vs blend vs optical-flow interpolation, measured.

The model renders 8 frames per second; editorial takes 24 (or 23.976 / 25 / 30). Which way of
filling the in-between frames is best is measured two ways, on miniature-world scenes of the
split asked for (choices on `validation`, `test` once for the shipped default):

- world truth: a scene rendered at the model's rate (8 frames, 32x32) and again with every
  in-between instant (the world is a pure function of time), so each delivered in-between frame
  has an exact reference; error = mean |delivered - truth| in 0-255 RGB, over the whole frame and
  over the moving object's pixels, per rate (24: thirds; 25 and 30: uneven phases);
- generated frames: the bundled model renders the scenes on their depth; every other generated
  frame is dropped and re-made from its neighbours at t = 0.5 (leave-one-out), error against the
  frame the model made. No truth exists between generated frames, so this is the closest check
  on the model's own (noisier) pictures.
Hold (repeat the current frame) and blend (cross-fade) are the trivial baselines; each row has a
95% bootstrap interval over scenes, and each method's paired difference with hold. The grid
datasets/preview/retime_grid.png shows truth | hold | blend | flow for a few scenes at 24 fps.
Run: python -m bench.bench_retime [--split validation|test] [--scenes N] [--model-scenes N]
[--no-model] [--grids-only]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.outputs.delivery import RATES, delivered_spans, source_positions
from story.tasks.outputs.retime import METHODS, retime
from story.tasks.world import miniworld
from story.tasks.world.splits import TEST, VALIDATION, seeds

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
GRID = REPO / "datasets" / "preview" / "retime_grid.png"
GENERATED_GRID = REPO / "datasets" / "preview" / "retime_generated_grid.png"
MODEL_FPS = 8
FRAMES, SIZE = 8, 32


def truth_positions(rate: Fraction) -> tuple[np.ndarray, int]:
    """Delivered positions (in model frames) of one clip, and the oversampling that makes each a
    whole frame of a finer render."""
    (span,) = delivered_spans([FRAMES], MODEL_FPS, rate)
    positions = source_positions(span, 0, FRAMES, MODEL_FPS, rate)
    positions = positions[positions < FRAMES - 1]  # past the last frame every method holds it
    step = Fraction(MODEL_FPS) / rate
    return positions, step.denominator


def world_errors(scenes: list[miniworld.SceneSpec], rate: Fraction) -> dict[str, np.ndarray]:
    """Per scene and method: mean |error| on in-between frames, frame-wide and on objects."""
    positions, over = truth_positions(rate)
    between = np.abs(positions - np.round(positions)) > 1e-6
    errors: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    for spec in scenes:
        coarse = miniworld.render(spec)
        fine = miniworld.render(replace(spec, frames=(FRAMES - 1) * over + 1))
        index = np.round(positions[between] * over).astype(int)
        truth, masks = fine.rgb[index].astype(np.float32), fine.masks[index] > 0
        for method in METHODS:
            made = retime(coarse.rgb, positions, method)[between].astype(np.float32)
            diff = np.abs(made - truth).mean(axis=-1)
            on_object = float(diff[masks].mean()) if masks.any() else float(diff.mean())
            errors[method].append((float(diff.mean()), on_object))
    return {m: np.asarray(v) for m, v in errors.items()}


def leave_one_out(clips: np.ndarray) -> dict[str, np.ndarray]:
    """Per clip and method: mean |error| re-making each odd frame from its even neighbours."""
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    for clip in clips:
        kept = clip[0::2]
        odd = np.arange(1, len(clip) - 1, 2)
        positions = odd / 2.0
        for method in METHODS:
            made = retime(kept, positions, method).astype(np.float32)
            errors[method].append(float(np.abs(made - clip[odd].astype(np.float32)).mean()))
    return {m: np.asarray(v) for m, v in errors.items()}


def table(errors: dict[str, np.ndarray], column: int | None = None) -> dict[str, dict]:
    """Mean and 95% interval per method, and its paired differences with the two baselines."""
    pick = {m: (e if column is None else e[:, column]) for m, e in errors.items()}
    return {
        m: {
            **mean_interval(v),
            "minus_hold": paired_difference(v, pick["hold"]),
            "minus_blend": paired_difference(v, pick["blend"]),
        }
        for m, v in pick.items()
    }


def generate(scenes: list[miniworld.SceneSpec], steps: int) -> np.ndarray:
    """The bundled model's renders of the scenes from their captions on their depth."""
    import torch

    from story.tasks.render.synthesize import load_t2v, render_batch
    from story.tasks.training.t2v_data import miniworld_structure

    torch.set_num_threads(1)
    model = load_t2v("tiny", REPO / "checkpoints", device="cpu")
    clips = [miniworld.render(s) for s in scenes]
    guides = torch.from_numpy(np.stack([miniworld_structure(c.depth) for c in clips]))[:, None]
    return render_batch(model, [c.caption for c in clips], guides, seed=0, steps=steps)


def grid(scenes: list[miniworld.SceneSpec], count: int, zoom: int = 3) -> Image.Image:
    """Rows per scene: truth, hold, blend, flow over the first second at 24 fps."""
    rate = RATES["24"]
    positions, over = truth_positions(rate)
    positions = positions[:9]
    rows = []
    for spec in scenes[:count]:
        coarse = miniworld.render(spec)
        fine = miniworld.render(replace(spec, frames=(FRAMES - 1) * over + 1))
        truth = fine.rgb[np.round(positions * over).astype(int)]
        for frames in [truth] + [retime(coarse.rgb, positions, m) for m in METHODS]:
            rows.append(np.concatenate(list(frames), axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows, axis=0)
    return Image.fromarray(sheet).resize(
        (sheet.shape[1] * zoom, sheet.shape[0] * zoom), Image.Resampling.NEAREST
    )


def generated_grid(clips: np.ndarray, count: int, zoom: int = 3) -> Image.Image:
    """Rows per generated clip: hold, blend, flow over its first second at 24 fps (no truth
    exists between generated frames: this is for looking at them)."""
    positions, _ = truth_positions(RATES["24"])
    positions = positions[:9]
    rows = []
    for clip in clips[:count]:
        for method in METHODS:
            rows.append(np.concatenate(list(retime(clip, positions, method)), axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows, axis=0)
    return Image.fromarray(sheet).resize(
        (sheet.shape[1] * zoom, sheet.shape[0] * zoom), Image.Resampling.NEAREST
    )


def run(args: argparse.Namespace) -> dict:
    scene_seeds = seeds(args.split, "scenes", args.scenes)
    scenes = [
        miniworld.sample_scene(s, frames=FRAMES, height=SIZE, width=SIZE) for s in scene_seeds
    ]
    results: dict = {"world_truth": {}}
    for name in ("24", "25", "30"):
        errors = world_errors(scenes, RATES[name])
        results["world_truth"][name] = {
            "frame": table(errors, 0),
            "object": table(errors, 1),
        }
    timings = {}
    clip = miniworld.render(scenes[0]).rgb
    positions, _ = truth_positions(RATES["24"])
    for method in METHODS:
        tick = time.perf_counter()
        for _ in range(5):
            retime(clip, positions, method)
        timings[method] = (time.perf_counter() - tick) / (5 * len(positions))
    results["seconds_per_delivered_frame"] = timings
    if args.model:
        tick = time.perf_counter()
        generated = generate(scenes[: args.model_scenes], args.steps)
        results["generated_leave_one_out"] = table(leave_one_out(generated))
        results["generated_seconds"] = time.perf_counter() - tick
        if args.split == VALIDATION:
            generated_grid(generated, args.grid).save(GENERATED_GRID)
            results["generated_grid"] = {
                "path": str(GENERATED_GRID.relative_to(REPO)),
                "rows": "per generated clip: hold | blend | flow, delivered frames 0-8 at 24 fps",
            }
    world = np.stack([miniworld.render(s).rgb for s in scenes])
    results["world_leave_one_out"] = table(leave_one_out(world))
    if args.split == VALIDATION:
        GRID.parent.mkdir(parents=True, exist_ok=True)
        grid(scenes, args.grid).save(GRID)
        results["grid"] = {
            "path": str(GRID.relative_to(REPO)),
            "rows": "per scene: truth | hold | blend | flow, delivered frames 0-8 at 24 fps",
            "seeds": scene_seeds[: args.grid],
        }
    results["setup"] = {
        "split": args.split,
        "seeds": [scene_seeds[0], scene_seeds[-1]],
        "scenes": args.scenes,
        "model_frames": FRAMES,
        "size": SIZE,
        "model_fps": MODEL_FPS,
        "steps": args.steps if args.model else None,
        "model_scenes": min(args.model_scenes, args.scenes) if args.model else 0,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
    }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=(VALIDATION, TEST), default=VALIDATION)
    parser.add_argument("--scenes", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument(
        "--model-scenes", type=int, default=48, help="scenes the model renders (the slow part)"
    )
    parser.add_argument("--no-model", dest="model", action="store_false")
    parser.add_argument(
        "--grids-only", action="store_true", help="only redraw the preview grids (validation)"
    )
    args = parser.parse_args(argv)
    if args.grids_only:
        scenes = [
            miniworld.sample_scene(s, frames=FRAMES, height=SIZE, width=SIZE)
            for s in seeds(VALIDATION, "scenes", args.grid)
        ]
        grid(scenes, args.grid).save(GRID)
        generated_grid(generate(scenes, args.steps), args.grid).save(GENERATED_GRID)
        return
    results = run(args)
    out = RESULTS / f"retime_{args.split}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "setup"}, indent=1)[:6000])


if __name__ == "__main__":
    main()
