"""Review-proxy resampling: which filter best shows a 32-pixel render at review size.

The miniature world renders the same scene at any size, so a scene rendered at the model's
32x32 and again at the proxy's size gives an exact reference for the upscale. Per filter
(nearest, bilinear, bicubic, lanczos, area): mean |error| in 0-255 RGB against the large
render, PSNR, and SSIM (luma, Gaussian window: structure as a viewer sees it), each with a 95%
bootstrap interval over scenes and the paired difference with nearest (the trivial baseline:
pixels as they are). Scenes come from the split asked for (choices on validation). Writes
bench/results/proxy_<split>.json and, on validation, datasets/preview/proxy_grid.png (per
scene: truth | nearest | bilinear | bicubic | lanczos).
Run: python -m bench.bench_proxy [--split validation|test] [--scenes N] [--width W]
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.outputs.imaging import RESAMPLING, resize
from story.tasks.world import miniworld
from story.tasks.world.splits import TEST, VALIDATION, seeds

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
GRID = REPO / "datasets" / "preview" / "proxy_grid.png"
SMALL = 32
PREVIEW_TILE = 256
"""Grid tiles are shown at this size (halved from the measured 512) to keep the PNG small."""


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two RGB pictures' luma (Wang et al. 2004, sigma 1.5)."""
    x, y = (cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float64) for im in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(im: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(im, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    score = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(score.mean())


def run(args: argparse.Namespace) -> dict:
    scene_seeds = seeds(args.split, "scenes", args.scenes)
    errors: dict[str, list[float]] = {name: [] for name in RESAMPLING}
    psnr: dict[str, list[float]] = {name: [] for name in RESAMPLING}
    structure: dict[str, list[float]] = {name: [] for name in RESAMPLING}
    rows = []
    for n, seed in enumerate(scene_seeds):
        spec = miniworld.sample_scene(seed, frames=2, height=SMALL, width=SMALL)
        small = miniworld.render(spec).rgb[0]
        big = miniworld.render(replace(spec, height=args.width, width=args.width)).rgb[0]
        row = [big]
        for name in RESAMPLING:
            made = resize(small, (args.width, args.width), name)
            diff = made.astype(np.float64) - big
            errors[name].append(float(np.abs(diff).mean()))
            psnr[name].append(float(10 * np.log10(255.0**2 / max((diff**2).mean(), 1e-9))))
            structure[name].append(ssim(made, big))
            if name != "area":
                row.append(made)
        if n < args.grid:
            tiles = [resize(tile, (PREVIEW_TILE, PREVIEW_TILE), "area") for tile in row]
            rows.append(np.concatenate(tiles, axis=1))
    results = {
        name: {
            "mae": {
                **mean_interval(errors[name]),
                "minus_nearest": paired_difference(errors[name], errors["nearest"]),
            },
            "psnr": mean_interval(psnr[name]),
            "ssim": {
                **mean_interval(structure[name]),
                "minus_nearest": paired_difference(structure[name], structure["nearest"]),
            },
        }
        for name in RESAMPLING
    }
    best = max(RESAMPLING, key=lambda name: float(np.mean(structure[name])))
    for name in RESAMPLING:
        results[name]["ssim"]["minus_best"] = paired_difference(structure[name], structure[best])
    out: dict = {"filters": results, "best_ssim": best}
    if args.split == VALIDATION and rows:
        GRID.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(GRID)
        out["grid"] = {
            "path": str(GRID.relative_to(REPO)),
            "columns": "truth at full size | nearest | bilinear | bicubic | lanczos",
        }
    out["setup"] = {
        "split": args.split,
        "seeds": [scene_seeds[0], scene_seeds[-1]],
        "from": SMALL,
        "to": args.width,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=(VALIDATION, TEST), default=VALIDATION)
    parser.add_argument("--scenes", type=int, default=48)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--grid", type=int, default=3)
    args = parser.parse_args(argv)
    results = run(args)
    (RESULTS / f"proxy_{args.split}.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, row in results["filters"].items():
        mae, db, sim = row["mae"], row["psnr"], row["ssim"]
        print(
            f"{name:9s} |err| {mae['mean']:.2f} [{mae['low']:.2f}, {mae['high']:.2f}]  "
            f"vs nearest {mae['minus_nearest']['difference']:+.2f}  PSNR {db['mean']:.2f} dB  "
            f"SSIM {sim['mean']:.4f} [{sim['low']:.4f}, {sim['high']:.4f}] "
            f"vs nearest {sim['minus_nearest']['difference']:+.4f}"
        )


if __name__ == "__main__":
    main()
