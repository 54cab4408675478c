"""Story rendering: orchestration overhead, re-render of an unchanged story, long-shot seams.

- overhead: the `render_story` flow (Prefect + Ray actors, one actor so nothing runs in
  parallel) on a 3-plot story vs the same plots rendered by direct calls to the plot worker
  in-process, model loading excluded; target overhead <= 10% of compute.
- rerender: the same story again (unchanged) vs the first render; target <= 5%.
- long shots: mean absolute frame change at clip seams vs within clips, for Reuse-and-Diffuse
  settings (M prompt frames, alpha, beta) and for independent windows; target seam <= 1.2x.

`python -m bench.bench_render [--steps N]`; needs the sample library (dvc repro sample_library).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.settings import REPO_ROOT, Settings

RESULTS = REPO_ROOT / "bench" / "results" / "render.json"
SAMPLE_MANIFEST = REPO_ROOT / "datasets" / "sample_library" / "manifest.jsonl"
STORY = """\
title: Bench
plots:
  - A red ball bounces on the grass
  - A blue cube slides to the left in the snow
  - A yellow cone circles on the sand
"""


def _index(settings: Settings) -> None:
    from story.tasks.index import ClipIndex
    from story.tasks.ingest import ClipIngestor, make_shards
    from story.tasks.manifest import read_manifest

    worker = ClipIngestor(settings.resolved())
    index = ClipIndex(settings.lancedb)
    for job in make_shards(read_manifest(SAMPLE_MANIFEST), 64):
        index.add(worker.process(job).rows)
    index.ensure_indices(settings.ivf_pq_min_rows)


def orchestration(root: Path, steps: int) -> dict[str, Any]:
    from prefect.testing.utilities import prefect_test_harness

    from story.flows.ray_pool import ensure_ray
    from story.flows.render_story import plan, render_story
    from story.tasks.render_plot import PlotRenderer
    from story.tasks.script import load_story

    base = Settings(workspace=root / "base", ray_workers=1)
    _index(base)
    story = root / "story.yaml"
    story.write_text(STORY)
    params = {"steps": steps}

    def fresh(name: str) -> Settings:
        settings = Settings(workspace=root / name, ray_workers=1)
        shutil.copytree(base.lancedb, settings.lancedb)
        return settings

    with prefect_test_harness(server_startup_timeout=120):
        warm = fresh("warm")
        ensure_ray(warm)
        render_story(str(story), warm.resolved(), seed=99, params=params, use_ray=True)

        flow_settings = fresh("flow")
        t0 = time.perf_counter()
        first = render_story(str(story), flow_settings.resolved(), params=params, use_ray=True)
        flow_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = render_story(str(story), flow_settings.resolved(), params=params, use_ray=True)
        rerender_s = time.perf_counter() - t0

    direct = fresh("direct")
    jobs = plan(load_story(story), direct, 0, "tiny", 1, {}, params)["jobs"]
    worker = PlotRenderer(direct.resolved())
    t0 = time.perf_counter()
    for job in jobs:
        worker.process(job)
    compute_s = time.perf_counter() - t0
    return {
        "plots": len(jobs),
        "steps": steps,
        "flow_wall_s": flow_s,
        "direct_compute_s": compute_s,
        "overhead_ratio": (flow_s - compute_s) / compute_s,
        "target_overhead_ratio": 0.10,
        "rerender_unchanged_s": rerender_s,
        "rerender_ratio": rerender_s / flow_s,
        "rerender_reused": again["reused"],
        "target_rerender_ratio": 0.05,
        "first_timings": first["timings"],
    }


def seam_ratio(video: np.ndarray, seams: list[int]) -> dict[str, float]:
    """Mean absolute change between consecutive frames, at seams vs elsewhere."""
    diffs = np.abs(np.diff(video.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    at = [diffs[s - 1] for s in seams]
    within = [d for i, d in enumerate(diffs) if i + 1 not in seams]
    return {"seam": float(np.mean(at)), "within": float(np.mean(within))}


def long_shots(steps: int, total: int = 24) -> list[dict[str, Any]]:
    from story.models.long_shot import ReuseDiffuse, clip_starts, sample_long
    from story.tasks.miniworld import render, sample_scene
    from story.tasks.synthesize import load_t2v
    from story.tasks.t2v_data import miniworld_structure

    model = load_t2v("tiny", device="cpu")
    length = model.config.frames
    prompts = ["a red sphere bounces on the grass", "a blue cube slides sideways on the snow"]
    guides = []
    for n, prompt in enumerate(prompts):
        clip = render(sample_scene(30_000_000 + n, frames=total, height=32, width=32))
        guides.append((prompt, torch.from_numpy(miniworld_structure(clip.depth))[None, None]))
    settings = [("independent windows", None)]
    for m in (1, 2):
        for alpha in (0.0, 1.0):
            for beta in (0.0, 0.6):
                settings.append((f"M={m} alpha={alpha} beta={beta}", ReuseDiffuse(m, alpha, beta)))
    rows = []
    for label, params in settings:
        seam = within = 0.0
        for prompt, guide in guides:
            text, null = model.encode_prompts([prompt]), model.encode_prompts([""])
            if params is None:
                chunks = []
                for start in range(0, total, length):
                    window = guide[:, :, start : start + length]
                    chunks.append(
                        sample_long(model, text, null, window, window.shape[2], steps=steps, seed=1)
                    )
                video, seams = torch.cat(chunks, dim=2), list(range(length, total, length))
            else:
                video = sample_long(
                    model, text, null, guide, total, params=params, steps=steps, seed=1
                )
                starts = clip_starts(total, length, params.prompt_frames)
                seams = [starts[i] + length for i in range(len(starts) - 1)]
            frames = ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).numpy()
            result = seam_ratio(frames, seams)
            seam += result["seam"] / len(guides)
            within += result["within"] / len(guides)
        rows.append({"setting": label, "seam": seam, "within": within, "ratio": seam / within})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-orchestration", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        report: dict[str, Any] = {
            "benchmark": "render",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if not args.skip_orchestration:
            report["orchestration"] = orchestration(root, args.steps)
        report["long_shots"] = long_shots(args.steps)
        report["target_seam_ratio"] = 1.2
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
