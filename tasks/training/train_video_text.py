"""Train the bundled video-text encoder on the miniature world (CPU, one thread, resumable).

    python -m story.tasks.training.train_video_text --out runs/video_text --steps 3000
    python -m story.tasks.training.train_video_text export --run runs/video_text \
        --out checkpoints/video-text-tiny

Loss: a contrastive loss between clips and texts whose targets are every clip in the batch that
shows what the text states (a partial text such as "a ball bounces" has several), plus attribute
heads on both embeddings (shape, colour, texture, motion with direction, camera, ground) that
make the space learn each attribute early; the heads are dropped at export. Clips come from the
train split only (`splits.require`); the validation split picks the exported step: text-to-clip
precision@1 (shape + motion + camera) of plot-style queries over validation clips.

The run folder holds `state.pt` (model, optimiser, step, curve; written atomically every
`--save-every` steps), so a killed run resumes where it stopped; `curve.json` is the curve.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from story.models.bpe_tokenizer import BPETokenizer
from story.models.video_text import VideoTextModel
from story.models.video_text_config import (
    VideoTextConfig,
    VideoTextTokenizer,
    compact_vocab_size,
)
from story.tasks.atomic import atomic_path
from story.tasks.training import video_text_data as data
from story.tasks.training.best_export import export_best
from story.tasks.world import splits

RELEVANT = ("shape", "motion", "camera")


def tiny_config(vocab: list[int]) -> VideoTextConfig:
    """The bundled model: 3 frames at 48x48 through a 4-layer ViT, 8 through the motion stream."""
    full = BPETokenizer().vocab_size
    return VideoTextConfig(
        open_clip={
            "embed_dim": 128,
            "vision_cfg": {
                "image_size": 48,
                "layers": 4,
                "width": 128,
                "head_width": 32,
                "mlp_ratio": 2.0,
                "patch_size": 8,
            },
            "text_cfg": {
                "context_length": 40,
                "vocab_size": compact_vocab_size(vocab, full),
                "width": 128,
                "heads": 4,
                "layers": 3,
                "mlp_ratio": 2.0,
            },
        },
        frames=8,
        appearance_frames=3,
        motion_size=32,
        motion_width=48,
        temporal_layers=1,
        input_size=data.SIZE,
        vocab=vocab,
    )


def build_vocab() -> list[int]:
    """BPE ids of every word the training texts can contain, sorted."""
    bpe = BPETokenizer()
    kept: set[int] = set()
    for text in data.vocabulary_texts():
        kept.update(bpe.encode(text))
    return sorted(kept)


class AttributeHeads(nn.Module):
    """Linear read-outs of each attribute from an embedding (training only)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {name: nn.Linear(dim, len(values)) for name, values in data.ATTRIBUTES.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(x) for name, head in self.heads.items()}


def label_index(labels: dict[str, str], name: str) -> int:
    return data.ATTRIBUTES[name].index(labels[name]) if name in labels else -100


def augment(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild gain / offset and noise (colours are attributes, so no hue change)."""
    x = frames.astype(np.float32)
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)
    x = x + rng.normal(0, 3.0, x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def make_batch(
    cache: data.FrameCache, indices: list[int], rng: random.Random, nrng: np.random.Generator
) -> tuple[torch.Tensor, list[str], list[dict[str, str]], list[dict[str, str]]]:
    """Frames (B, T, 3, H, W), texts, the attributes each text states and each clip's labels."""
    videos, texts, stated, labels = [], [], [], []
    for i in indices:
        frames = np.asarray(cache.frames[i])
        d = cache.described[i]
        if rng.random() < 0.5:
            frames, d = frames[:, :, ::-1], data.mirrored(d)
        if rng.random() < 0.3:
            frames, d = frames[::-1], data.reversed_in_time(d)
        frames = augment(np.ascontiguousarray(frames), nrng)
        text, says = data.make_text(d, cache.seeds[i] + rng.randrange(1000), rng)
        videos.append(torch.from_numpy(frames).permute(0, 3, 1, 2))
        texts.append(text)
        stated.append(says)
        labels.append(data.labels_of(d))
    video = torch.stack(videos).float() / 255.0
    return video, texts, stated, labels


def soft_targets(stated: list[dict[str, str]], labels: list[dict[str, str]]) -> torch.Tensor:
    """(texts, clips) row-normalised: 1 where the clip shows all the text states."""
    m = torch.tensor([[float(data.matches(s, c)) for c in labels] for s in stated])
    m.fill_diagonal_(1.0)
    return m


def losses(
    model: VideoTextModel,
    heads: AttributeHeads,
    tokenizer: VideoTextTokenizer,
    video: torch.Tensor,
    texts: list[str],
    stated: list[dict[str, str]],
    labels: list[dict[str, str]],
    head_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    v = model.encode_video(video)
    t = model.encode_text(torch.from_numpy(tokenizer(texts)))
    logits = model.logit_scale.exp().clamp(max=100) * t @ v.T
    match = soft_targets(stated, labels)
    t2v = -(F.log_softmax(logits, 1) * match / match.sum(1, keepdim=True)).sum(1).mean()
    col = match.T
    v2t = -(F.log_softmax(logits.T, 1) * col / col.sum(1, keepdim=True)).sum(1).mean()
    contrastive = (t2v + v2t) / 2
    aux = torch.zeros(())
    v_out, t_out = heads(v), heads(t)
    for name in data.ATTRIBUTES:
        y_v = torch.tensor([label_index(c, name) for c in labels])
        y_t = torch.tensor([label_index(s, name) for s in stated])
        aux = aux + F.cross_entropy(v_out[name], y_v)
        if (y_t >= 0).any():
            aux = aux + 0.5 * F.cross_entropy(t_out[name], y_t, ignore_index=-100)
    total = contrastive + head_weight * aux
    return total, {"contrastive": contrastive.item(), "aux": aux.item()}


def validation_queries(count: int) -> list[tuple[str, dict[str, str]]]:
    """Plot-style queries of validation scenes and what they ask (shape, motion, camera)."""
    from story.tasks.script.query_prompt import derive_query_prompt
    from story.tasks.world import miniworld as mw

    out = []
    for seed in splits.seeds(splits.VALIDATION, "queries", count):
        spec = mw.sample_scene(seed)
        query, _ = derive_query_prompt(mw.make_caption(spec, variant=seed % 6), {})
        truth = data.labels_of(mw.describe(spec))
        out.append((query, {k: truth[k] for k in RELEVANT}))
    return out


@torch.inference_mode()
def evaluate(
    model: VideoTextModel,
    tokenizer: VideoTextTokenizer,
    cache: data.FrameCache,
    queries: list[tuple[str, dict[str, str]]],
) -> dict[str, float]:
    """Text-to-clip precision@1 / recall@5 over the validation clips (an uncaptioned library)."""
    model.eval()
    vectors = []
    for start in range(0, len(cache), 64):
        chunk = torch.from_numpy(np.array(cache.frames[start : start + 64]))
        vectors.append(model.encode_video(chunk.permute(0, 1, 4, 2, 3).float() / 255.0))
    clips = torch.cat(vectors)
    labels = [data.labels_of(d) for d in cache.described]
    texts = model.encode_text(torch.from_numpy(tokenizer([q for q, _ in queries])))
    order = (texts @ clips.T).argsort(dim=1, descending=True)[:, :5]
    p1 = r5 = 0.0
    for (_, truth), ranked in zip(queries, order.tolist(), strict=True):
        hits = [data.matches(truth, labels[j]) for j in ranked]
        p1 += hits[0]
        r5 += any(hits)
    model.train()
    return {"p@1": round(p1 / len(queries), 4), "R@5": round(r5 / len(queries), 4)}


def learning_rate(peak: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.03 + 0.97 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def save_state(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as partial:
        torch.save(payload, partial)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    state = torch.load(state_path, weights_only=True) if state_path.exists() else None
    if state is not None:
        config = VideoTextConfig.from_dict(state["config"])
    else:
        config = tiny_config(build_vocab())
    train_cache = data.build_cache(run / "cache", splits.TRAIN, args.train_clips, config.frames)
    val_cache = data.build_cache(run / "cache", splits.VALIDATION, args.val_clips, config.frames)
    queries = validation_queries(args.val_queries)

    torch.manual_seed(args.seed)
    model = VideoTextModel(config).train()
    heads = AttributeHeads(config.embed_dim)
    params = list(model.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    curve: list[dict[str, Any]] = []
    step, seconds, best = 0, 0.0, {"p@1": -1.0}
    if state is not None:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds, curve, best = state["step"], state["seconds"], state["curve"], state["best"]
        print(f"resumed at step {step} ({seconds / 60:.1f} min trained)", flush=True)
    tokenizer = VideoTextTokenizer(config)
    rng = random.Random(args.seed * 7919 + step)
    nrng = np.random.default_rng([args.seed, step])
    running: dict[str, float] = {}
    while step < args.steps:
        t0 = time.perf_counter()
        lr = learning_rate(args.lr, step, args.steps, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = [rng.randrange(len(train_cache)) for _ in range(args.batch)]
        video, texts, stated, labels = make_batch(train_cache, indices, rng, nrng)
        loss, parts = losses(
            model, heads, tokenizer, video, texts, stated, labels, args.head_weight
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        seconds += time.perf_counter() - t0
        for key, value in {"loss": loss.item(), **parts}.items():
            running[key] = running.get(key, value) * 0.95 + value * 0.05
        if step % args.log_every == 0:
            print(
                f"step {step} lr {lr:.2e} "
                + " ".join(f"{k} {v:.3f}" for k, v in running.items())
                + f" {seconds / step:.2f}s/step",
                flush=True,
            )
        evaluate_now = step % args.eval_every == 0 or step == args.steps
        if evaluate_now:
            scores = evaluate(model, tokenizer, val_cache, queries)
            point = {"step": step, "minutes": round(seconds / 60, 2), "lr": lr, **scores}
            point.update({k: round(v, 4) for k, v in running.items()})
            curve.append(point)
            print("eval", json.dumps(point), flush=True)
            if scores["p@1"] > best["p@1"]:
                best = {**scores, "step": step}
                model.save_pretrained(run / "best", dtype=torch.float32)
            (run / "curve.json").write_text(json.dumps({"curve": curve, "best": best}, indent=1))
        if evaluate_now or step % args.save_every == 0:
            save_state(
                state_path,
                {
                    "config": config.to_dict(),
                    "model": model.state_dict(),
                    "heads": heads.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "seconds": seconds,
                    "curve": curve,
                    "best": best,
                    "args": vars(args),
                },
            )
    print(f"done: {step} steps, {seconds / 60:.1f} min, best {best}", flush=True)


def export(args: argparse.Namespace) -> None:
    """Write the best validation step as the fp16 checkpoint, with its curve and recipe."""
    export_best(
        VideoTextModel.from_pretrained,
        args.run,
        args.out,
        trained_on="miniature world, train split 'library' seeds",
        selected_on="validation split: text-to-clip p@1 (shape + motion + camera)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    exp = sub.add_parser("export", help="Export the best step as the fp16 checkpoint.")
    exp.add_argument("--run", required=True)
    exp.add_argument("--out", required=True)
    parser.add_argument("--out", default="runs/video_text")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--head-weight", type=float, default=0.5)
    parser.add_argument("--train-clips", type=int, default=16000)
    parser.add_argument("--val-clips", type=int, default=600)
    parser.add_argument("--val-queries", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "export":
        export(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
