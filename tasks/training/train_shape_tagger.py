"""Train the shape tagger ingest runs on every clip (CPU, one thread, resumable).

    python -m story.tasks.training.train_shape_tagger --out runs/shape --steps 1500
    python -m story.tasks.training.train_shape_tagger export --run runs/shape \
        --out checkpoints/shape-tiny

Frames come from the video-text encoder's frame cache of train-split world clips (rendered once,
`video_text_data.build_cache`); labels are each clip's main-object shape. Augmentation stands in
for the library's media: mirrored frames, random frame picks, a random down-and-up resize (H.264
and resizing soften edges) and brightness / contrast jitter. The validation split's cached clips
pick the exported step (accuracy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from story.models.shape_tagger import ShapeTagger, ShapeTaggerConfig
from story.tasks.atomic import atomic_path
from story.tasks.training import video_text_data as data
from story.tasks.training.best_export import export_best
from story.tasks.world import splits
from story.tasks.world.miniworld import SHAPES


def _batch(
    cache: data.FrameCache, ids: np.ndarray, frames: int, rng: np.random.Generator, augment: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    total = cache.frames.shape[1]
    picks = (
        np.sort(np.stack([rng.choice(total, frames, replace=False) for _ in ids]), axis=1)
        if augment
        else np.tile(data.frame_picks(total, frames), (len(ids), 1))
    )
    x = np.stack([cache.frames[i][p] for i, p in zip(ids, picks, strict=True)])
    video = torch.from_numpy(x).permute(0, 1, 4, 2, 3).float() / 255.0
    if augment:
        flip = torch.from_numpy(rng.random(len(ids)) < 0.5)
        video[flip] = video[flip].flip(-1)
        size = video.shape[-1]
        small = int(rng.integers(size // 2, size + 1))
        if small < size:
            flat = F.interpolate(video.flatten(0, 1), size=small, mode="bilinear", antialias=True)
            video = F.interpolate(flat, size=size, mode="bilinear").view_as(video)
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (len(ids), 1, 1, 1, 1))).float()
        shift = torch.from_numpy(rng.uniform(-0.06, 0.06, (len(ids), 1, 1, 1, 1))).float()
        video = (video * gain + shift).clamp(0.0, 1.0)
    labels = torch.tensor([SHAPES.index(cache.described[i].shape) for i in ids])
    return video, labels


@torch.inference_mode()
def accuracy(model: ShapeTagger, cache: data.FrameCache, frames: int) -> float:
    """Share of the cache's clips whose main-object shape the model reads right."""
    model.eval()
    hits = 0
    rng = np.random.default_rng(0)
    for start in range(0, len(cache), 100):
        ids = np.arange(start, min(start + 100, len(cache)))
        video, labels = _batch(cache, ids, frames, rng, augment=False)
        hits += int((model(video).argmax(1) == labels).sum())
    model.train()
    return hits / len(cache)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cache_dir = Path(args.cache)
    train_set = data.build_cache(cache_dir, splits.TRAIN, args.train_clips, 8)
    splits.require_all(train_set.seeds, splits.TRAIN)
    val_set = data.build_cache(cache_dir, splits.VALIDATION, args.val_clips, 8)
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    config = ShapeTaggerConfig(labels=list(SHAPES), frames=args.frames, widths=args.widths)
    model = ShapeTagger(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state_path = run / "state.pt"
    step, seconds, curve, best = 0, 0.0, [], {"accuracy": -1.0, "step": 0}
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, curve, best = state["step"], state["seconds"], state["curve"], state["best"]
    rng = np.random.default_rng(args.seed + step)
    model.train()
    while step < args.steps:
        t0 = time.perf_counter()
        lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        video, labels = _batch(
            train_set, rng.integers(0, len(train_set), args.batch), args.frames, rng, True
        )
        loss = F.cross_entropy(model(video), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        seconds += time.perf_counter() - t0
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f} {seconds / step:.2f}s/step", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            score = float(accuracy(model, val_set, args.frames))
            curve.append({"step": step, "minutes": round(seconds / 60, 2), "accuracy": score})
            print("eval " + json.dumps(curve[-1]), flush=True)
            if score > best["accuracy"]:
                best = {"accuracy": score, "step": step}
                model.save_pretrained(run / "best", dtype=torch.float32)
            (run / "curve.json").write_text(json.dumps({"curve": curve, "best": best}, indent=1))
            with atomic_path(state_path) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "seconds": seconds,
                        "curve": curve,
                        "best": best,
                        "args": vars(args),
                    },
                    tmp,
                )
    print(f"done: {step} steps, {seconds / 60:.1f} min, best {best}", flush=True)


def export(args: argparse.Namespace) -> None:
    """Write the best validation step as the fp16 checkpoint, with its curve and recipe."""
    export_best(
        ShapeTagger.from_pretrained,
        args.run,
        args.out,
        trained_on="miniature world, {train_clips} train-split clips",
        selected_on="{val_clips} validation-split clips: shape accuracy",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    exp = sub.add_parser("export", help="Export the best step as the fp16 checkpoint.")
    exp.add_argument("--run", required=True)
    exp.add_argument("--out", required=True)
    parser.add_argument("--out", default="runs/shape")
    parser.add_argument("--cache", default="runs/video_text/cache")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 48, 64])
    parser.add_argument("--train-clips", type=int, default=16000)
    parser.add_argument("--val-clips", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "export":
        export(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
