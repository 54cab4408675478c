"""Train the motion / camera classifier that ingest applies to every clip's motion descriptor.

    python -m story.tasks.training.train_motion --out checkpoints/motion-tiny

Descriptors (`story.tasks.library.motion.motion_descriptor`) are computed on train-split world
clips rendered at the library's size and frame count, after an H.264 round trip like the
library's own files; each clip also serves mirrored and played backwards (left / right, towards /
away and zoom in / out swap). The validation split picks the hidden width and weight decay;
the accuracy of every candidate is written to metrics.json. Descriptors are cached under
`--cache` so a re-run (or a killed one) does not recompute them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from story.tasks.library.motion import (
    CAMERA_LABELS,
    MOTION_LABELS,
    MotionClassifier,
    motion_descriptor,
)
from story.tasks.training.video_text_data import labels_of, mirrored, reversed_in_time
from story.tasks.world import miniworld, splits

VARIANTS = ("plain", "mirrored", "reversed")


def _h264(rgb: np.ndarray, fps: float) -> np.ndarray:
    """Frames after an H.264 encode / decode (the library's media), in memory."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps), options={"crf": "20"})
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        for frame in rgb:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def descriptors(split: str, count: int, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(descriptors, motion ids, camera ids) of `count` clips x 3 variants (resumable)."""
    seeds = splits.seeds(split, "library", count, start=2_000_000)
    if split == splits.TRAIN:
        splits.require_all(seeds, splits.TRAIN)
    path = cache / f"motion_{split}_{count}.npz"
    done: dict[str, list] = {"x": [], "motion": [], "camera": []}
    if path.is_file():
        with np.load(path) as data:
            done = {k: list(data[k]) for k in done}
    start = len(done["x"]) // len(VARIANTS)
    for n, seed in enumerate(seeds[start:], start=start):
        spec = miniworld.sample_scene(seed)
        rgb = _h264(miniworld.render(spec).rgb, spec.fps)
        described = miniworld.describe(spec)
        for variant in VARIANTS:
            frames, d = rgb, described
            if variant == "mirrored":
                frames, d = rgb[:, :, ::-1], mirrored(described)
            elif variant == "reversed":
                frames, d = rgb[::-1], reversed_in_time(described)
            labels = labels_of(d)
            done["x"].append(motion_descriptor(np.ascontiguousarray(frames)))
            done["motion"].append(MOTION_LABELS.index(labels["motion"]))
            done["camera"].append(CAMERA_LABELS.index(labels["camera"]))
        if (n + 1) % 200 == 0 or n + 1 == count:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, **{k: np.asarray(v) for k, v in done.items()})
            print(f"{split}: {n + 1}/{count} clips", flush=True)
    return (
        np.asarray(done["x"], np.float32),
        np.asarray(done["motion"]),
        np.asarray(done["camera"]),
    )


def _onehot(ids: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((len(ids), classes), np.float32)
    out[np.arange(len(ids)), ids] = 1.0
    return out


def fit(
    x: np.ndarray,
    motion: np.ndarray,
    camera: np.ndarray,
    hidden: int,
    decay: float,
    steps: int = 1500,
    lr: float = 0.01,
    seed: int = 0,
) -> MotionClassifier:
    """Full-batch Adam on the two heads' cross-entropy plus L2 weight decay."""
    rng = np.random.default_rng(seed)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    width = hidden or z.shape[1]
    params = {
        "hidden_weights": rng.normal(0, 1 / np.sqrt(z.shape[1]), (z.shape[1], hidden)),
        "hidden_bias": np.zeros(hidden),
        "motion_weights": rng.normal(0, 0.01, (width, len(MOTION_LABELS))),
        "motion_bias": np.zeros(len(MOTION_LABELS)),
        "camera_weights": rng.normal(0, 0.01, (width, len(CAMERA_LABELS))),
        "camera_bias": np.zeros(len(CAMERA_LABELS)),
    }
    targets = {"motion": _onehot(motion, len(MOTION_LABELS)), "camera": _onehot(camera, 5)}
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    for step in range(1, steps + 1):
        h = np.tanh(z @ params["hidden_weights"] + params["hidden_bias"]) if hidden else z
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        back = np.zeros_like(h)
        for head in ("motion", "camera"):
            logits = h @ params[f"{head}_weights"] + params[f"{head}_bias"]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = (p - targets[head]) / len(z)
            grads[f"{head}_weights"] = h.T @ g + decay * params[f"{head}_weights"]
            grads[f"{head}_bias"] = g.sum(0)
            back += g @ params[f"{head}_weights"].T
        if hidden:
            back *= 1 - h * h
            grads["hidden_weights"] = z.T @ back + decay * params["hidden_weights"]
            grads["hidden_bias"] = back.sum(0)
        for k, g in grads.items():
            m, v = moments[k]
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            params[k] -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
    return MotionClassifier(
        mean=mean.astype(np.float32), scale=scale.astype(np.float32), notes={}, **arrays
    )


def accuracy(
    model: MotionClassifier, x: np.ndarray, motion: np.ndarray, camera: np.ndarray
) -> dict[str, float]:
    """Top-1 accuracy of each head."""
    h = model.features(x)
    motion_hit = (h @ model.motion_weights + model.motion_bias).argmax(1) == motion
    camera_hit = (h @ model.camera_weights + model.camera_bias).argmax(1) == camera
    return {
        "motion": round(float(motion_hit.mean()), 4),
        "camera": round(float(camera_hit.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="checkpoints/motion-tiny")
    parser.add_argument("--cache", default="runs/motion")
    parser.add_argument("--train-clips", type=int, default=2000)
    parser.add_argument("--val-clips", type=int, default=500)
    args = parser.parse_args()
    t0 = time.perf_counter()
    train = descriptors(splits.TRAIN, args.train_clips, Path(args.cache))
    val = descriptors(splits.VALIDATION, args.val_clips, Path(args.cache))
    features_s = time.perf_counter() - t0
    grid = []
    for hidden in (0, 32, 64):
        for decay in (1e-4, 1e-3, 1e-2):
            model = fit(*train, hidden=hidden, decay=decay)
            score = accuracy(model, *val)
            grid.append({"hidden": hidden, "decay": decay, "validation": score})
            print(json.dumps(grid[-1]), flush=True)
    best = max(grid, key=lambda g: g["validation"]["motion"] + g["validation"]["camera"])
    model = fit(*train, hidden=best["hidden"], decay=best["decay"])
    model.notes = {
        "trained_on": f"{args.train_clips} train-split clips x {len(VARIANTS)} variants",
        "selected_on": f"{args.val_clips} validation-split clips x {len(VARIANTS)} variants",
        "chosen": best,
        "train_accuracy": accuracy(model, *train),
        "descriptor_seconds": round(features_s, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "classifier.json")
    (out / "metrics.json").write_text(json.dumps({"grid": grid, **model.notes}, indent=1) + "\n")
    print(json.dumps(model.notes))


if __name__ == "__main__":
    main()
