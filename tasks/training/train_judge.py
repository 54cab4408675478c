"""Train the judge on real miniature-world clips of the train split, resumably, on one thread.

    nice -n 10 python -m story.tasks.training.train_judge --run runs/judge \
        --out checkpoints/judge-tiny --steps 3000

Every step renders fresh train-split scenes (`splits.require` guards each seed), augments them
(`judge_data.augment`) and updates the judge on attribute cross-entropy plus the main-object mask
(an auxiliary target: it teaches the net which object the captions mean). The state (weights,
optimiser, step, curve) is saved to `--run` every `--eval-every` steps after scoring validation
clips, so a killed run resumes where it stopped with `--steps` unchanged. At the end the judge is
saved fp16 to `--out` with metrics.json (training time, steps, validation curve and accuracy).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from story.models.judge import VideoJudge
from story.tasks.atomic import atomic_path
from story.tasks.evaluation.judge_eval import judge_report
from story.tasks.evaluation.judge_reader import JudgeReader, judge_id
from story.tasks.training.judge_data import (
    ATTRIBUTES,
    Augmentation,
    attribute_vocab,
    augment,
    render_judge_clips,
    training_seeds,
)
from story.tasks.world import splits

STATE = "state.pt"
MASK_POS_WEIGHT = 4.0
TRAIN_SPLITS = (splits.TRAIN,)
NOT_RECIPE = ("run", "out", "minutes", "export_only")


def judge_loss(
    judge: VideoJudge,
    video: torch.Tensor,
    masks: torch.Tensor,
    labels: dict[str, torch.Tensor],
    mask_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over every attribute plus `mask_weight` x the main-object mask BCE."""
    out = judge(video)
    parts = {
        name: F.cross_entropy(out.logits[name], labels[name], label_smoothing=0.05)
        for name in ATTRIBUTES
    }
    pos = torch.tensor(MASK_POS_WEIGHT)
    frames = masks[:, judge.appearance_indices(masks.shape[1])]
    target = F.adaptive_avg_pool2d(frames, out.appearance_masks.shape[-2:])
    parts["mask"] = F.binary_cross_entropy_with_logits(out.appearance_masks, target, pos_weight=pos)
    target = F.adaptive_avg_pool2d(masks, out.motion_masks.shape[-2:])
    parts["track"] = F.binary_cross_entropy_with_logits(out.motion_masks, target, pos_weight=pos)
    loss = sum(parts[name] for name in ATTRIBUTES)
    loss = loss + mask_weight * (parts["mask"] + 0.5 * parts["track"])
    return loss, {name: v.item() for name, v in parts.items()}


def learning_rate(peak: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def validation_accuracy(judge: VideoJudge, count: int) -> dict[str, Any]:
    """Per-attribute accuracy on `count` validation clips, native size and as 32x32 x 8."""
    reader = JudgeReader(judge.eval(), "training")
    report = judge_report(reader, splits.VALIDATION, count)
    judge.train()
    return {
        size: {name: row["mean"] for name, row in rows.items()} for size, rows in report.items()
    }


def _new_state(args: argparse.Namespace) -> dict[str, Any]:
    judge = VideoJudge(
        attributes=attribute_vocab(),
        frames=args.frames,
        size=args.size,
        appearance_frames=args.appearance_frames,
        appearance_widths=tuple(args.appearance_widths),
        motion_widths=tuple(args.motion_widths),
        embedding_dim=args.embedding_dim,
    )
    session = {"from_step": 0, "args": vars(args)}
    return {"judge": judge, "step": 0, "seconds": 0.0, "curve": [], "sessions": [session]}


def _load_state(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = run / STATE
    if not path.is_file():
        return _new_state(args)
    saved = torch.load(path, weights_only=True)
    judge = VideoJudge.from_config(saved["config"])
    judge.load_state_dict(saved["weights"])
    print(f"resuming {path} at step {saved['step']}", flush=True)
    sessions = saved.get("sessions") or [{"from_step": 0, "args": saved.pop("args", None)}]
    sessions.append({"from_step": saved["step"], "args": vars(args)})
    return {**saved, "sessions": sessions, "judge": judge}


def _save_state(run: Path, state: dict[str, Any], optimiser: torch.optim.Optimizer) -> None:
    run.mkdir(parents=True, exist_ok=True)
    judge = state["judge"]
    payload = {k: v for k, v in state.items() if k != "judge"}
    payload.update(
        config=dict(judge.config), weights=judge.state_dict(), optimiser=optimiser.state_dict()
    )
    with atomic_path(run / STATE) as partial:
        torch.save(payload, partial)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) until `--steps`, or until `--minutes` of this session have passed."""
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    state = _load_state(run, args)
    judge: VideoJudge = state["judge"].train()
    optimiser = torch.optim.AdamW(judge.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if "optimiser" in state:
        optimiser.load_state_dict(state["optimiser"])
    aug = Augmentation() if args.augment else Augmentation.none()
    session_start, tick = time.monotonic(), time.monotonic()
    recent: list[dict[str, float]] = []
    while state["step"] < args.steps:
        step = state["step"]
        torch.manual_seed(args.seed * 1_000_003 + step)
        rng = np.random.default_rng([args.seed, step])
        seeds = training_seeds(step, args.batch)
        clips = render_judge_clips(seeds, args.frames, args.size, allowed=TRAIN_SPLITS)
        video, masks, labels = augment(clips, rng, aug)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(args.lr, step, args.steps, args.warmup)
        loss, parts = judge_loss(judge, video, masks, labels, args.mask_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(judge.parameters(), 1.0)
        optimiser.step()
        recent.append({"loss": loss.item(), **parts})
        state["step"] = step + 1
        done = state["step"] >= args.steps
        out_of_time = time.monotonic() - session_start > args.minutes * 60
        out_of_time = out_of_time or state["step"] == args.stop_step
        if state["step"] % args.eval_every == 0 or done or out_of_time:
            state["seconds"] += time.monotonic() - tick
            means = {k: round(float(np.mean([r[k] for r in recent])), 4) for k in recent[0]}
            point = {"step": state["step"], "train_seconds": round(state["seconds"], 1), **means}
            point["validation"] = validation_accuracy(judge, args.val_clips)
            state["curve"].append(point)
            print(json.dumps(point), flush=True)
            state["optimiser"] = optimiser.state_dict()
            _save_state(run, state, optimiser)
            recent, tick = [], time.monotonic()
        if out_of_time and not done:
            print(f"session ended at step {state['step']}; resume to continue", flush=True)
            return {"step": state["step"], "finished": False}
    return finish(state, args)


def export_saved(args: argparse.Namespace) -> dict[str, Any]:
    """Export the run's last saved (validated) step without training, e.g. to ship a step whose
    validation accuracy met the target while the run goes on."""
    path = Path(args.run) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved judge state to export")
    saved = torch.load(path, weights_only=True)
    judge = VideoJudge.from_config(saved["config"])
    judge.load_state_dict(saved["weights"])
    sessions = saved.get("sessions") or [{"from_step": 0, "args": saved.get("args")}]
    return finish({**saved, "judge": judge, "sessions": sessions}, args)


def finish(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Save the frozen judge fp16 with its metrics (validation figures; test is `story eval`)."""
    out = Path(args.out)
    judge: VideoJudge = state["judge"].eval()
    judge.save_half(out)
    last = state["curve"][-1]
    first = splits.base(splits.TRAIN, "judge")
    metrics = {
        "model_id": judge_id(out),
        "params": sum(p.numel() for p in judge.parameters()),
        "steps": state["step"],
        "train_seconds": round(state["seconds"], 1),
        "batch": args.batch,
        "threads": args.threads,
        "train_seeds": [first, first + state["step"] * args.batch],
        "recipe": {k: v for k, v in vars(args).items() if k not in NOT_RECIPE},
        "sessions": state["sessions"],
        "validation": last["validation"],
        "validation_clips": args.val_clips,
        "curve": state["curve"],
        "note": "sealed test accuracy: `story eval judge --split test` (bench/results/judge.json)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {k: metrics[k] for k in ("model_id", "steps", "train_seconds", "validation")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/judge", help="Resumable state folder (scratch).")
    parser.add_argument("--out", default="checkpoints/judge-tiny", help="Checkpoint folder.")
    parser.add_argument("--steps", type=int, default=3000, help="Total steps (keep on resume).")
    parser.add_argument("--minutes", type=float, default=1e9, help="This session's time budget.")
    parser.add_argument(
        "--stop-step", type=int, default=None, help="End this session at this step (resumable)."
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--mask-weight", type=float, default=1.0, help="0 drops the mask target.")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--appearance-frames", type=int, default=4)
    parser.add_argument("--appearance-widths", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--motion-widths", type=int, nargs="+", default=[48, 96, 128])
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--val-clips", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--export-only", action="store_true", help="Export the saved state of --run; no training."
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    result = export_saved(arguments) if arguments.export_only else train(arguments)
    print(json.dumps(result, indent=2))
