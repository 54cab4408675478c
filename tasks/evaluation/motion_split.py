"""Where a render's motion is: inside the cells its guide clip holds still, or elsewhere.

`still_hold` (story.models.still_hold) holds still the latent cells the guide clip never moves
between two frames. A render's whole-frame motion (the synthesis evaluation's "motion
magnitude", mean Farneback flow over the frame) then falls by whatever spurious flow the
flicker drew there, where the real clip barely moves, so the whole-frame figure cannot say
whether the hold also calmed what should move. This splits each render's mean flow into the
share that lies in the guide's still cells and the share elsewhere (the two add up to the
whole-frame motion), for two evaluation runs of the same plots, and pairs them plot by plot,
beside the real clip with the prompt's look (the eval's reference).

It reads the renders a `story eval synthesis` run cached in its `--out` folder and renders
nothing: run the evaluation first, with the same split, scene count and checkpoint. On the
sealed test split it is recorded in the ledger (`bench/results/sealed_test_runs.jsonl`) like any
test run.

    python -m story.tasks.evaluation.motion_split --split validation --scenes 80 \\
        --a runs/eval-v3:still_hold=0 --b runs/eval-still:still_hold=1 \\
        --out bench/results/motion_split.json

Each run names the sampling it was rendered at, as `story eval synthesis --sampling` did; a run
without the hold names `still_hold=0`, since the hold is the default. `--b-checkpoint` reads run
b as rendered by another checkpoint of the same shape (a new decoder under the same U-Net, say);
the still cells come from the guide clips, so they are the same for both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from story.models.still_hold import still_cells
from story.tasks.evaluation.temporal import pair_flows


def motion_split(frames: np.ndarray, still: np.ndarray) -> tuple[float, float]:
    """(T, H, W, 3) uint8 frames, (T, H, W) bool still pixels (pair t-1 -> t) -> the clip's mean
    flow per frame width that lies in still pixels and elsewhere, as shares of the frame mean."""
    inside, outside = [], []
    for t, flow in enumerate(pair_flows(frames), start=1):
        magnitude = np.linalg.norm(flow, axis=-1) / frames.shape[2]
        held = still[t]
        inside.append(float(magnitude[held].sum() / magnitude.size))
        outside.append(float(magnitude[~held].sum() / magnitude.size))
    return float(np.mean(inside)), float(np.mean(outside))


def spatial_detail(frames: np.ndarray) -> float:
    """(T, H, W, 3) uint8 frames -> the mean absolute grey-level difference (0..255) between
    horizontally and vertically neighbouring pixels, averaged over both directions and frames."""
    grey = frames.astype(np.float32).mean(-1)
    return float((np.abs(np.diff(grey, axis=2)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2)


def still_pixels(clip: np.ndarray, height: int, width: int, latent: tuple[int, int]) -> np.ndarray:
    """The guide clip's still cells (as `still_hold` reads them), at pixel resolution."""
    cells = still_cells(clip, (height, width), latent).float()[:, None]
    return F.interpolate(cells, size=(height, width), mode="nearest")[:, 0].bool().numpy()


def _shape(model: Any) -> tuple[int, int, int, tuple[int, ...]]:
    """What a checkpoint renders: frames, height, width and its latent grid."""
    cfg = model.config
    return cfg.frames, cfg.height, cfg.width, tuple(model.latent_shape[-2:])


def _run(spec: str) -> tuple[Path, dict[str, float]]:
    folder, _, knobs = spec.partition(":")
    sampling = {}
    for item in filter(None, knobs.split(",")):
        key, _, value = item.partition("=")
        sampling[key] = float(value)
    return Path(folder), sampling


def _bootstrap(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval over plots (motion is ~1e-3: 7 decimals)."""
    rng = np.random.default_rng(seed)
    boots = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(4000)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return round(float(values.mean()), 7), round(float(low), 7), round(float(high), 7)


def _mean(values: np.ndarray) -> dict[str, float]:
    mean, low, high = _bootstrap(values)
    return {"mean": mean, "low": low, "high": high, "n": len(values)}


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    difference, low, high = _bootstrap(b - a)
    return {
        "difference": difference,
        "low": low,
        "high": high,
        "significant": bool(low > 0 or high < 0),
    }


def _relative(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """b's mean over a's, less 1, with a 95% paired percentile-bootstrap interval over plots."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), (4000, len(a)))
    boots = b[draws].mean(1) / a[draws].mean(1) - 1
    low, high = np.percentile(boots, [2.5, 97.5])
    return {
        "relative": round(float(b.mean() / a.mean() - 1), 5),
        "low": round(float(low), 5),
        "high": round(float(high), 5),
        "worst plot": round(float((b / a - 1).min()), 5),
        "significant": bool(low > 0 or high < 0),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="validation")
    parser.add_argument("--scenes", type=int, default=80)
    parser.add_argument("--checkpoint", default="t2v-64f4-v3")
    parser.add_argument("--a", required=True, help="FOLDER[:knob=v,...] of the reference run")
    parser.add_argument("--b", required=True, help="FOLDER[:knob=v,...] of the compared run")
    parser.add_argument(
        "--b-checkpoint", default=None, help="run b's checkpoint, if not --checkpoint's"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rerun-sealed", action="store_true")
    args = parser.parse_args(argv)

    from story.models.depth import load_depth_estimator
    from story.models.text_encoder import load_text_encoder
    from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
    from story.tasks.evaluation.eval_library import EvalLibrary
    from story.tasks.evaluation.synthesis_cases import production_cases
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, condition_jobs
    from story.tasks.render.synthesize import load_t2v
    from story.tasks.settings import get_settings

    torch.set_num_threads(1)
    settings = get_settings()
    checkpoints = {"a": args.checkpoint, "b": args.b_checkpoint or args.checkpoint}
    model = load_t2v(eval_checkpoint(checkpoints["a"], settings.checkpoints), device="cpu")
    model_ids = {"a": model.model_id, "b": model.model_id}
    if checkpoints["b"] != checkpoints["a"]:
        model_b = load_t2v(eval_checkpoint(checkpoints["b"], settings.checkpoints), device="cpu")
        shape, shape_b = _shape(model), _shape(model_b)
        if shape != shape_b:
            sys.exit(
                f"{checkpoints['b']}: renders {shape_b} (frames, height, width, latent), "
                f"{checkpoints['a']} renders {shape}: the two runs' plots cannot be paired"
            )
        model_ids["b"] = model_b.model_id
    runs = {"a": _run(args.a), "b": _run(args.b)}
    if args.split == "test":
        from story.tasks.evaluation.sealed import configuration_id, open_sealed_run

        open_sealed_run(
            "synthesis-motion-split",
            " vs ".join(configuration_id(model_ids[n], s) for n, (_, s) in runs.items()),
            rerun=args.rerun_sealed,
            details={"scenes": args.scenes},
        )
    cfg = model.config
    depth = load_depth_estimator("tiny", settings.checkpoints, device="cpu")
    library = EvalLibrary(
        Path(settings.workspace) / "eval" / "library",
        args.split,
        1000,
        load_text_encoder("minilm", device="cpu"),
    )
    cases = production_cases(
        args.split,
        args.scenes,
        library,
        lambda rgb, size: depth.estimate(rgb, size=size),
        cfg.frames,
        cfg.height,
        cfg.width,
    )
    latent_h, latent_w = model.latent_shape[-2:]
    latent = (latent_h, latent_w)
    stills = [still_pixels(case.clip, cfg.height, cfg.width, latent) for case in cases]
    shares: dict[str, np.ndarray] = {}
    real = np.array([motion_split(c.ideal, s) for c, s in zip(cases, stills, strict=True)])
    shares["real"] = real
    detail = {"real": np.array([spatial_detail(c.ideal) for c in cases])}
    for name, (folder, sampling) in runs.items():
        config = SynthesisEvalConfig(
            split=args.split, checkpoint=checkpoints[name], scenes=args.scenes, sampling=sampling
        )
        jobs = condition_jobs(
            model_ids[name], cases, True, 0, config, folder / "renders" / "production"
        )
        missing = [j.path for j in jobs if not j.path.is_file()]
        if missing:
            sys.exit(
                f"{folder}: {len(missing)} of {len(jobs)} renders are missing (first: "
                f"{missing[0]}); run `story eval synthesis` with the same split, scenes, "
                "checkpoint and sampling into that folder first"
            )
        renders = [np.load(j.path) for j in jobs]
        shares[name] = np.array([motion_split(r, s) for r, s in zip(renders, stills, strict=True)])
        detail[name] = np.array([spatial_detail(r) for r in renders])
    still_share = float(np.mean([s[1:].mean() for s in stills]))
    result = {
        "split": args.split,
        "plots": len(cases),
        "model_id": model.model_id,
        "runs": {
            name: {"folder": str(f), "sampling": s, "model_id": model_ids[name]}
            for name, (f, s) in runs.items()
        },
        "still_share_of_frame": round(still_share, 4),
        "motion": {
            name: {
                part: _mean(values[:, i]) for i, part in enumerate(("in still cells", "elsewhere"))
            }
            for name, values in shares.items()
        },
        "paired b - a": {
            part: _paired(shares["a"][:, i], shares["b"][:, i])
            for i, part in enumerate(("in still cells", "elsewhere"))
        },
        "spatial detail": {name: _mean(values) for name, values in detail.items()},
        "spatial detail, paired b / a - 1": _relative(detail["a"], detail["b"]),
        "command": "python -m story.tasks.evaluation.motion_split "
        + " ".join(argv or sys.argv[1:]),
    }
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
