"""Train the bundled tiny depth net on the miniature world's exact depth.

    python -m story.tasks.training.train_depth --out checkpoints/depth-tiny --minutes 12

Training clips are rendered here from train-split scene seeds (each checked with
`splits.require`); accuracy is measured on validation-split scenes, which training never sees.
The loss is MiDaS's: disparity compared after per-frame median / mean-absolute-deviation
alignment (scale and shift invariant), plus a multi-scale gradient-matching term. The checkpoint
folder gets config.json, model.safetensors and metrics.json (training time, steps, held-out
AbsRel and delta<1.25).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from story.models.depth import (
    TinyDepthConfig,
    TinyDepthEstimator,
    TinyDepthNet,
    frames_to_unit,
    param_count,
)
from story.tasks.evaluation.depth_eval import constant_prior, depth_metrics, vertical_prior
from story.tasks.world import splits

HELDOUT_SEED = splits.base(splits.VALIDATION, "scenes")
"""First held-out seed: the validation split's scenes (training draws train-split scenes only)."""
GRADIENT_SCALES = 4
GRADIENT_WEIGHT = 0.5
WARMUP = 0.05


def render_clips(
    seeds: range | list[int], frames: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miniature-world clips as (N, T, H, W, 3) uint8 RGB, (N, T, H, W) metric depth and
    (N, T, H, W) bool object masks."""
    from story.tasks.world.miniworld import render, sample_scene

    rgb, depth, objects = [], [], []
    for seed in seeds:
        clip = render(sample_scene(int(seed), frames=frames, height=size, width=size))
        rgb.append(clip.rgb)
        depth.append(clip.depth)
        objects.append(clip.masks > 0)
    return np.stack(rgb), np.stack(depth).astype(np.float32), np.stack(objects)


def ssi_normalise(x: torch.Tensor) -> torch.Tensor:
    """Per-map shift by the median and scale by the mean absolute deviation (B, H, W)."""
    flat = x.flatten(1)
    median = flat.median(dim=1).values
    mad = (flat - median[:, None]).abs().mean(dim=1).clamp_min(1e-6)
    return (x - median[:, None, None]) / mad[:, None, None]


def ssi_loss(
    pred: torch.Tensor, disparity: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale-and-shift-invariant L1 plus multi-scale gradient matching, as MiDaS trains; an
    optional per-pixel `weight` (B, H, W) weighs the L1 term (e.g. up on object pixels)."""
    residual = ssi_normalise(pred) - ssi_normalise(disparity)
    if weight is None:
        loss = residual.abs().mean()
    else:
        loss = (residual.abs() * weight).sum() / weight.sum()
    for scale in range(GRADIENT_SCALES):
        r = residual[:, :: 2**scale, :: 2**scale]
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs().mean()
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs().mean()
        loss = loss + GRADIENT_WEIGHT * (gx + gy) / GRADIENT_SCALES
    return loss


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter and, for half the frames, JPEG round trips standing in for video coding."""
    out = rgb.astype(np.float32)
    gain = rng.uniform(0.8, 1.2, (len(out), 1, 1, 1))
    bias = rng.uniform(-20, 20, (len(out), 1, 1, 1))
    out = np.clip(out * gain + bias, 0, 255).astype(np.uint8)
    for i in np.flatnonzero(rng.random(len(out)) < 0.5):
        quality = int(rng.integers(30, 95))
        ok, buf = cv2.imencode(".jpg", out[i][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return out


def evaluate(estimator: TinyDepthEstimator, rgb: np.ndarray, depth: np.ndarray) -> dict[str, Any]:
    """Held-out AbsRel / delta<1.25 of the net and of two trivial priors, clip by clip."""
    scores: dict[str, list[dict[str, float]]] = {"tiny": [], "vertical_prior": [], "constant": []}
    for clip_rgb, clip_depth in zip(rgb, depth, strict=True):
        pred = estimator.estimate(clip_rgb)
        scores["tiny"].append(depth_metrics(pred, clip_depth))
        scores["vertical_prior"].append(depth_metrics(vertical_prior(clip_depth.shape), clip_depth))
        scores["constant"].append(depth_metrics(constant_prior(clip_depth.shape), clip_depth))
    return {
        name: {m: round(float(np.mean([r[m] for r in rows])), 4) for m in ("absrel", "delta1")}
        for name, rows in scores.items()
    }


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first WARMUP of the time budget, then cosine decay to 2%."""
    if progress < WARMUP:
        return peak * max(progress / WARMUP, 0.01)
    decay = (min(progress, 1.0) - WARMUP) / (1.0 - WARMUP)
    return peak * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * decay)))


def _prior_metrics(init: str | None) -> dict[str, Any]:
    """Metrics of the checkpoint training resumes from, so totals cover every session."""
    path = Path(init) / "metrics.json" if init else None
    return json.loads(path.read_text()) if path and path.is_file() else {}


def _prior_sessions(prior: dict[str, Any]) -> list[dict[str, Any]]:
    """The sessions behind the resumed checkpoint (one, from its totals, if it lists none)."""
    if "sessions" in prior:
        return list(prior["sessions"])
    if "steps" in prior:
        return [{"steps": prior["steps"], "seconds": prior.get("train_seconds")}]
    return []


def seed_ranges(args: argparse.Namespace) -> dict[str, list[int]]:
    """Training scenes (train split, checked) and held-out scenes (validation) of a run."""
    train_seeds = splits.seeds(splits.TRAIN, "scenes", args.train_clips)
    splits.require_all(train_seeds, splits.TRAIN)
    heldout = splits.seeds(splits.VALIDATION, "scenes", args.eval_clips)
    splits.require_all(heldout, splits.VALIDATION)
    return {"train": train_seeds, "heldout": heldout}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Render the training pool, train for the time budget, save, evaluate on held-out seeds."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    seeds = seed_ranges(args)

    t0 = time.perf_counter()
    rgb, depth, objects = render_clips(seeds["train"], args.frames, args.size)
    render_s = time.perf_counter() - t0
    rgb = rgb.reshape(-1, *rgb.shape[2:])
    objects = objects.reshape(-1, *objects.shape[2:])
    disparity = 1.0 / np.maximum(depth.reshape(-1, *depth.shape[2:]), 1e-3)
    print(f"rendered {len(rgb)} training frames in {render_s:.1f}s", flush=True)

    if args.init:
        # Resume: the checkpoint's own shape wins over --channels / --groups.
        net = TinyDepthNet.load(args.init).train()
        if net.config.train_size != args.size:
            raise ValueError(
                f"{args.init}: trained at {net.config.train_size}px, --size is {args.size}"
            )
    else:
        config = TinyDepthConfig(
            channels=tuple(args.channels), groups=args.groups, train_size=args.size
        )
        net = TinyDepthNet(config)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60.0
    t_train = time.perf_counter()
    step, losses = 0, []
    while step < args.max_steps and (elapsed := time.perf_counter() - t_train) < budget:
        lr = learning_rate(args.lr, elapsed / budget)
        for group in optimiser.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, len(rgb), args.batch)
        x = frames_to_unit(torch.from_numpy(augment(rgb[idx], rng)))
        target = torch.from_numpy(disparity[idx])
        weight = 1.0 + args.object_weight * torch.from_numpy(objects[idx]).float()
        if rng.random() < 0.5:
            x, target, weight = x.flip(-1), target.flip(-1), weight.flip(-1)
        loss = ssi_loss(net(x), target, weight if args.object_weight else None)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(
                f"step {step} loss {np.mean(losses[-100:]):.4f} lr {lr:.2e} "
                f"{time.perf_counter() - t_train:.0f}s",
                flush=True,
            )
    train_s = time.perf_counter() - t_train

    out = Path(args.out)
    net.eval().save(out)
    estimator = TinyDepthEstimator(out, device="cpu")
    heldout = seeds["heldout"]
    eval_rgb, eval_depth, _ = render_clips(heldout, args.frames, args.size)
    prior = _prior_metrics(args.init)
    metrics = {
        "model_id": estimator.model_id,
        "params": param_count(net),
        "train_seconds": round(train_s + prior.get("train_seconds", 0.0), 1),
        "render_seconds": round(render_s + prior.get("render_seconds", 0.0), 1),
        "steps": step + prior.get("steps", 0),
        "sessions": [
            *_prior_sessions(prior),
            {
                "steps": step,
                "seconds": round(train_s, 1),
                "lr": args.lr,
                "object_weight": args.object_weight,
            },
        ],
        "batch": args.batch,
        "final_loss": round(float(np.mean(losses[-100:])), 4) if losses else None,
        "train_seeds": [seeds["train"][0], seeds["train"][-1] + 1],
        "heldout_seeds": [heldout[0], heldout[-1] + 1],
        "frames_per_clip": args.frames,
        "size": args.size,
        "threads": args.threads,
        "heldout": evaluate(estimator, eval_rgb, eval_depth),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="checkpoints/depth-tiny", help="Checkpoint folder.")
    parser.add_argument("--minutes", type=float, default=12.0, help="Training time budget.")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-clips", type=int, default=400)
    parser.add_argument("--eval-clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="Start from this checkpoint's weights.")
    parser.add_argument(
        "--object-weight",
        type=float,
        default=0.0,
        help="Extra L1 weight on object pixels (objects are small; they carry the structure).",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(train(parse_args()), indent=2))
