"""Synthesis benchmark: quality by `story eval synthesis`, and the cost of structure guidance.

`python -m bench.bench_synthesis [--checkpoint NAME --scenes N --seeds S]` runs the synthesis
evaluation on the validation split (production path + controlled case, judged by the judge, with
baselines and 95% intervals; `story eval synthesis` documents it) and times one denoising step
guided vs text-only (and guided with tau = 500), modes interleaved in every repeat so load on a
shared machine hits them alike. Writes bench/results/synthesis.json; the HTML report stays in
the evaluation folder (`--report`).

`--speed-only t2v-64f4,t2v-64,tiny` skips the evaluation and times each named checkpoint in one
run (seconds per denoising step and per 20-step render at its native size), so their ratios
come from the same machine state: bench/results/synthesis_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from story.models.pipeline import SAMPLING_DEFAULTS
from story.models.sampler import sample_latents
from story.models.t2v import StructureT2V
from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, evaluate_synthesis
from story.tasks.render.synthesize import load_t2v
from story.tasks.settings import REPO_ROOT, get_settings

RESULTS = REPO_ROOT / "bench" / "results" / "synthesis.json"
SPEED_RESULTS = REPO_ROOT / "bench" / "results" / "synthesis_speed.json"
CHECKPOINTS = REPO_ROOT / "checkpoints"


def step_seconds(model: StructureT2V, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per denoising step (one clip, guidance on) per mode, modes interleaved."""
    cfg = model.config
    text = model.encode_prompts(["a red cube on the grass"])
    null = model.encode_prompts([""])
    guide = torch.zeros(1, cfg.structure_channels, cfg.frames, cfg.height, cfg.width)
    modes = {"text_only": (None, 0), "guided": (guide, 0), "guided_tau500": (guide, 500)}
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, (structure, tau) in modes.items():
            tick = time.perf_counter()
            sample_latents(
                model,
                text,
                null,
                structure,
                steps=steps,
                guidance=SAMPLING_DEFAULTS["guidance"],
                tau=tau,
                generator=torch.Generator().manual_seed(0),
            )
            times[name].append((time.perf_counter() - tick) / steps)
    out = {name: float(np.median(values)) for name, values in times.items()}
    out["guided_over_text_only"] = out["guided"] / out["text_only"]
    out["target_met"] = out["guided_over_text_only"] <= 1.3
    return out


def speed_only(names: list[str], steps: int, repeats: int, threads: int) -> dict:
    """Seconds per denoising step of each checkpoint at its native size, in one run."""
    torch.set_num_threads(threads)
    rows = {}
    for name in names:
        model = load_t2v(eval_checkpoint(name, CHECKPOINTS), device="cpu")
        cfg = model.config
        timing = step_seconds(model, steps, repeats)
        rows[name] = {
            "model_id": model.model_id,
            "frames": cfg.frames,
            "height": cfg.height,
            "width": cfg.width,
            "latent": list(model.latent_shape),
            **timing,
            "guided_render_20_steps_s": round(20 * timing["guided"], 2),
        }
    return {
        "checkpoints": rows,
        "timing_steps": steps,
        "repeats": repeats,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"threads": threads, "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tiny")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--library-clips", type=int, default=1000)
    parser.add_argument("--timing-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", type=Path, default=None, help="Evaluation report folder.")
    parser.add_argument("--out", type=Path, default=None, help="Results JSON.")
    parser.add_argument(
        "--speed-only", default=None, help="Comma-separated checkpoints: time them, no evaluation."
    )
    args = parser.parse_args(argv)
    if args.speed_only:
        speed = speed_only(
            args.speed_only.split(","), args.timing_steps, args.repeats, args.threads
        )
        out = args.out or SPEED_RESULTS
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(speed, indent=2) + "\n")
        print(json.dumps(speed, indent=2))
        return
    args.out = args.out or RESULTS
    settings = get_settings()
    config = SynthesisEvalConfig(
        checkpoint=args.checkpoint,
        scenes=args.scenes,
        seeds=args.seeds,
        steps=args.steps,
        library_clips=args.library_clips,
        threads=args.threads,
    )
    folder = (
        args.report or settings.workspace / "eval" / f"bench-synthesis-{Path(args.checkpoint).name}"
    )
    report = evaluate_synthesis(config, folder, CHECKPOINTS, settings.workspace)
    model = load_t2v(eval_checkpoint(args.checkpoint, CHECKPOINTS), device="cpu")
    results = {
        "evaluation": json.loads(Path(report["json"]).read_text()),
        "report": report["html"],
        "seconds_per_step": step_seconds(model, args.timing_steps, args.repeats),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"report": report["html"], "seconds": report["seconds"]}))


if __name__ == "__main__":
    main()
