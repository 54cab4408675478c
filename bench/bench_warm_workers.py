"""Warm synthesis workers: this project's warm pool vs Ray Serve model multiplexing.

Both keep `PlotRenderer`s (the bundled t2v-tiny loaded once) alive between renders; a render
asks for a worker that has the checkpoint loaded and sends it plot jobs. Measured per method,
each in its own process with its own local Ray (2 CPUs), methods alternated over `--rounds`:

- cold_s: from asking for a worker to the first render's result (actor start + model load);
- warm render: `--renders` renders of `--plots` plot jobs each (new seeds, so every shot is
  synthesised; the clip's depth is stored after the first), wall time per render, and the
  dispatch overhead: wall time minus the compute the worker itself timed;
- memory: unique memory (USS) of every process of the Ray session after the warm renders, minus
  the same right after `ray.init` (the pool's worker; Serve's controller and replica).

Serve runs without HTTP proxies (`proxy_location="Disabled"`; renders call a deployment handle
with `multiplexed_model_id` = the checkpoint's sha256); it needs `pip install
'story-pipeline[serve]'`, otherwise only the pool is measured. Results:
bench/results/warm_workers.json. `python -m bench.bench_warm_workers [--rounds R --renders N
--plots P --steps S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from story.tasks.settings import REPO_ROOT, Settings

RESULTS = REPO_ROOT / "bench" / "results" / "warm_workers.json"
CLIP = REPO_ROOT / "tests" / "test_files" / "pan.mp4"
METHODS = ("pool", "serve")


def session_uss() -> float:
    """MiB of unique memory of every process this driver started (Ray's, and their workers)."""
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def plot_jobs(plots: int, seed: int, steps: int) -> list[Any]:
    """`plots` jobs on the committed test clip, seeds from `seed` (every shot new)."""
    from story.tasks.library.media import probe, source_hash
    from story.tasks.render.jobs import PlotJob

    info = probe(str(CLIP))
    clip = {
        "clip_id": "bench-pan",
        "uri": str(CLIP),
        "start": 0.0,
        "end": info.duration,
        "fps": info.fps,
        "source_hash": source_hash(str(CLIP)),
        "caption": "a pan",
    }
    frames = tuple(range(0, min(info.frames, 16), 2))
    return [
        PlotJob(
            index=i,
            candidate=0,
            prompt="a red ball on the grass",
            clip=clip,
            frame_indices=frames,
            seed=seed + i,
            params={"steps": steps},
        )
        for i in range(plots)
    ]


class PoolRenders:
    """Renders through `WarmExecutor` on a warm pool (this project's warm workers)."""

    def __init__(self, settings: Settings) -> None:
        from story.flows.executors import WarmExecutor
        from story.flows.executors.warm_pool import WarmPool
        from story.tasks.render.render_plot import PlotRenderer
        from story.tasks.workers import WorkerSpec

        self.pool = WarmPool(idle_s=600)
        self.executor = WarmExecutor(self.pool, workers=1)
        self.spec = WorkerSpec(PlotRenderer, {"settings": settings, "checkpoint": "tiny"})

    def render(self, jobs: list[Any]) -> list[Any]:
        outcomes = list(self.executor.map(self.spec, jobs))
        errors = [error for _, _, error in outcomes if error is not None]
        if errors:
            raise errors[0]
        return [result for _, result, _ in outcomes]

    def close(self) -> None:
        self.pool.shutdown()


class ServeRenders:
    """Renders through a Ray Serve deployment whose replica multiplexes PlotRenderers."""

    def __init__(self, settings: Settings) -> None:
        from ray import serve

        from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
        from story.tasks.render.checkpoints import resolve_checkpoint

        @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=4)
        class Renderers:
            def __init__(self, settings: Settings) -> None:
                self.settings = settings

            @serve.multiplexed(max_num_models_per_replica=2)
            async def renderer(self, model_id: str) -> Any:
                from story.tasks.render.render_plot import PlotRenderer

                return PlotRenderer(self.settings, checkpoint=model_id.split("@")[0])

            async def __call__(self, job: Any) -> Any:
                renderer = await self.renderer(serve.get_multiplexed_model_id())
                return await asyncio.to_thread(renderer.process, job)

        serve.start(proxy_location="Disabled")
        self.serve = serve
        self.handle = serve.run(Renderers.bind(settings), name="renderers", route_prefix=None)
        sha = checkpoint_sha256(resolve_checkpoint("tiny", settings.checkpoints))
        self.model_id = f"tiny@{sha[:16]}"

    def render(self, jobs: list[Any]) -> list[Any]:
        handle = self.handle.options(multiplexed_model_id=self.model_id)
        responses = [handle.remote(job) for job in jobs]
        return [response.result() for response in responses]

    def close(self) -> None:
        self.serve.shutdown()


def measure(method: str, renders: int, plots: int, steps: int) -> dict[str, Any]:
    """One method in this process: cold start, warm renders, memory."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    time.sleep(2.0)
    baseline = session_uss()
    workspace = Path(tempfile.mkdtemp(prefix=f"bench-warm-{method}-"))
    settings = Settings(workspace=workspace, ray_workers=1)
    t0 = time.perf_counter()
    runner = PoolRenders(settings) if method == "pool" else ServeRenders(settings)
    runner.render(plot_jobs(plots, 1000, steps))
    cold_s = time.perf_counter() - t0
    walls, overheads = [], []
    for n in range(renders):
        jobs = plot_jobs(plots, 2000 + 100 * n, steps)
        t0 = time.perf_counter()
        results = runner.render(jobs)
        wall = time.perf_counter() - t0
        compute = sum(r.timings["structure_s"] + r.timings["synthesis_s"] for r in results)
        walls.append(wall)
        overheads.append(wall - compute)
    memory = session_uss() - baseline
    runner.close()
    ray.shutdown()
    return {
        "method": method,
        "cold_s": round(cold_s, 3),
        "render_wall_s": [round(w, 4) for w in walls],
        "dispatch_overhead_s": [round(o, 4) for o in overheads],
        "session_uss_mib": round(memory, 1),
    }


def _child(method: str, renders: int, plots: int, steps: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.bench_warm_workers",
        "--child",
        method,
        "--renders",
        str(renders),
        "--plots",
        str(plots),
        "--steps",
        str(steps),
    ]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{method} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def serve_available() -> bool:
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        return False
    return True


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: medians over every warm render and every round, with the spread."""
    out: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        walls = np.array([w for r in mine for w in r["render_wall_s"]])
        over = np.array([o for r in mine for o in r["dispatch_overhead_s"]])
        out[method] = {
            "rounds": len(mine),
            "cold_s_median": float(np.median([r["cold_s"] for r in mine])),
            "warm_render_s_median": float(np.median(walls)),
            "warm_render_s_p90": float(np.percentile(walls, 90)),
            "dispatch_overhead_s_median": float(np.median(over)),
            "dispatch_overhead_s_p90": float(np.percentile(over, 90)),
            "session_uss_mib_median": float(np.median([r["session_uss_mib"] for r in mine])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Alternations of the methods.")
    parser.add_argument("--renders", type=int, default=8, help="Warm renders per round.")
    parser.add_argument("--plots", type=int, default=3, help="Plot jobs per render.")
    parser.add_argument("--steps", type=int, default=2, help="Denoising steps per shot.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.renders, args.plots, args.steps)))
        return
    methods = METHODS if serve_available() else ("pool",)
    runs = []
    for round_ in range(args.rounds):
        order = methods if round_ % 2 == 0 else tuple(reversed(methods))
        for method in order:
            runs.append(_child(method, args.renders, args.plots, args.steps))
            print(json.dumps(runs[-1]), flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": vars(args) | {"out": str(args.out)},
        "serve_installed": "serve" in methods,
        "summary": summarise(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
