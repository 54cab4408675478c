"""Miniature-world rendering speed: clips/s and frames/s at 64x64x16 and 128x128x16.

    python -m bench.bench_miniworld [--clips 200] [--out bench/results/miniworld.json]

Scene sampling is timed apart from rendering (ray casting, shading and the caption); numpy
elementwise work runs on one core, so wall time on a busy machine exceeds CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from story.tasks.world import miniworld as mw

SIZES = ((64, 64, 16), (128, 128, 16))


def bench_size(height: int, width: int, frames: int, clips: int) -> dict[str, float | int]:
    """Time sampling and rendering `clips` scenes of one size; wall and CPU seconds."""
    start = time.perf_counter()
    specs = [
        mw.sample_scene(seed, frames=frames, height=height, width=width) for seed in range(clips)
    ]
    sample_s = time.perf_counter() - start
    mw.render(specs[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for spec in specs:
        mw.render(spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "height": height,
        "width": width,
        "frames": frames,
        "clips": clips,
        "sample_seconds": round(sample_s, 4),
        "render_seconds": round(wall, 4),
        "render_cpu_seconds": round(cpu, 4),
        "clips_per_s": round(clips / wall, 1),
        "frames_per_s": round(clips * frames / wall, 1),
        "clips_per_cpu_s": round(clips / cpu, 1),
    }


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    try:
        import torch

        torch_version: str | None = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark, write the JSON result and print it."""
    parser = argparse.ArgumentParser(description="miniature-world rendering speed")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/miniworld.json"))
    args = parser.parse_args(argv)
    results = [
        bench_size(h, w, t, args.clips if h <= 64 else max(args.clips // 4, 1)) for h, w, t in SIZES
    ]
    report: dict[str, object] = {
        "benchmark": "miniworld",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": results,
        "ratio_128_to_64_clip_time": round(
            results[0]["clips_per_s"] / results[1]["clips_per_s"], 2
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
