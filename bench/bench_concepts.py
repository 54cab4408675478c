"""Concept fidelity and prompt alignment of the five concept methods on the miniature world.

The character "bob" (datasets/concepts/bob: a red sphere with white stripes) is trained with every
method from the same images, once per training seed (`--seeds`, the table gives the mean and the
spread), then rendered as "a <bob> <on the background>" on guide clips whose
depth comes from other scenes (a sphere moving in different ways, other cameras). Measured from
pixels, with the guide's object mask as the place the character should be:
- fidelity: histogram intersection of palette-colour labels inside the mask with bob's own
  (measured on rendered bob scenes), the mean RGB distance to bob's mean colour, and how often
  the dominant colour inside the mask is bob's red; the same histogram intersection over every
  non-background pixel (`fidelity_anywhere`, placement-free) and the red + white share there;
- prompt alignment: the background named by the prompt, read from pixels
  (story.tasks.evaluation.quality);
- structure: IoU of red pixels with the guide's object mask.
A `described` row spells bob out in words ("a red striped sphere") as a reference. A tau sweep
for TimeInv + LoRA shows how late structure guidance trades fidelity for structure (Fig. 5).
Run: python -m bench.bench_concepts [--checkpoint DIR] [--steps N] [--seeds N] [--params SPEC]

Seeds come from `story.tasks.world.splits`: regularisation clips from the train split, every
shot from the validation split (the sweep's and the benchmark's apart inside it); the sealed test
shots are scored once per shipped model by `story eval concepts --split test`.
Settings are chosen fairly, on validation guide clips (other seeds than the benchmark's shots):
`--sweep SPEC [SPEC ...]` trains bob with each SPEC (`key=value,...` of ConceptParams, e.g.
`method=timeinv_lora,lr_lora=1e-3,lora_targets=cross_kv,reg_clips=8`) and adds its scores to
bench/results/concepts_lora_sweep.json; `--sweep-lora-lr LR [LR ...]` is the shorthand for both
LoRA methods at each rate (0 = the method without LoRA). `reg_clips=N` trains with N
regularisation clips of spheres in motion with their captions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from story.tasks.concepts.images import read_concept_images
from story.tasks.concepts.methods import METHODS
from story.tasks.concepts.params import ConceptParams
from story.tasks.concepts.runtime import load_concepts, unload_concepts
from story.tasks.concepts.trainer import default_depth, train_concept
from story.tasks.concepts.training_data import TrainingClip
from story.tasks.evaluation.concept_shots import regularization_seeds, shot_seeds
from story.tasks.evaluation.quality import (
    COLOUR_NAMES,
    background_of,
    colour_mask_iou,
    pixel_colour_labels,
)
from story.tasks.provenance.checkpoint_identity import model_fingerprint
from story.tasks.render.synthesize import load_t2v, synthesize
from story.tasks.training.t2v_data import miniworld_structure
from story.tasks.world import miniworld, splits
from story.tasks.world.captions import BACKGROUND_WORDS

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "datasets" / "concepts" / "bob"
RESULTS = ROOT / "bench" / "results" / "concepts.json"
GRID = ROOT / "datasets" / "preview" / "concepts_grid.png"
DEMO_PACK = ROOT / "checkpoints" / "concepts" / "bob"
BENCH_SHOTS_START = 10_000
"""The benchmark's shots sit apart from the sweep's inside the validation block."""
SWEEP_RESULTS = ROOT / "bench" / "results" / "concepts_lora_sweep.json"
TAUS = (0, 250, 500, 750, 1000)


def _bob_module():
    spec = importlib.util.spec_from_file_location(
        "make_concept_images", ROOT / "datasets" / "make_concept_images.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def label_histogram(pixels: np.ndarray) -> np.ndarray:
    """Share of each palette colour among (N, 3) pixels."""
    counts = np.bincount(pixel_colour_labels(pixels).ravel(), minlength=len(COLOUR_NAMES))
    return counts / max(1, counts.sum())


def reference_look(size: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Bob's palette histogram and mean colour inside his mask, over rendered scenes."""
    bob = _bob_module()
    pixels = []
    for i in range(n):
        spec = bob.bob_scene(500 + i, tuple(miniworld.BACKGROUNDS)[i % 4], size)
        clip = miniworld.render(spec)
        pixels.append(clip.rgb[clip.masks == 1])
    allpx = np.concatenate(pixels)
    return label_histogram(allpx), allpx.astype(np.float64).mean(0)


def guide_shots(n: int, frames: int, size: int, start: int = BENCH_SHOTS_START) -> list[dict]:
    """Guide clips from other scenes (sphere moving, varied cameras), one background each."""
    shots = []
    backgrounds = tuple(miniworld.BACKGROUNDS)
    for i, seed in enumerate(shot_seeds(splits.VALIDATION, n, start)):
        spec = miniworld.sample_scene(
            seed, frames=frames, height=size, width=size, n_objects=1, shape="sphere"
        )
        spec = replace(spec, background=backgrounds[i % len(backgrounds)])
        clip = miniworld.render(spec)
        shots.append(
            {
                "background": spec.background,
                "motion": spec.objects[0].motion,
                "camera": spec.camera,
                "guide": miniworld_structure(clip.depth),
                "mask": clip.masks == 1,
            }
        )
    return shots


def object_pixels(render: np.ndarray, background: str, tolerance: float = 45.0) -> np.ndarray:
    """(N, 3) pixels below the sky rows that are not the background's ground or sky colour."""
    body = render[:, max(1, render.shape[1] // 5) :].astype(np.float64)
    ground, sky = (np.array(c, np.float64) for c in miniworld.BACKGROUNDS[background])
    far = (np.linalg.norm(body - ground, axis=-1) >= tolerance) & (
        np.linalg.norm(body - sky, axis=-1) >= tolerance
    )
    return body[far]


def score(render: np.ndarray, shot: dict, ref_hist: np.ndarray, ref_mean: np.ndarray) -> dict:
    inside = render[shot["mask"]]
    hist = label_histogram(inside)
    painted = object_pixels(render, shot["background"])
    anywhere = label_histogram(painted) if len(painted) else np.zeros_like(ref_hist)
    labels = pixel_colour_labels(inside)
    top = COLOUR_NAMES[int(np.bincount(labels.ravel(), minlength=len(COLOUR_NAMES)).argmax())]
    return {
        "fidelity_hist": float(np.minimum(hist, ref_hist).sum()),
        "fidelity_anywhere": float(np.minimum(anywhere, ref_hist).sum()),
        "red_white_share": float(
            anywhere[COLOUR_NAMES.index("red")] + anywhere[COLOUR_NAMES.index("white")]
        ),
        "colour_distance": float(np.linalg.norm(inside.astype(np.float64).mean(0) - ref_mean)),
        "red_dominant": float(top == "red"),
        "background_ok": float(background_of(render) == shot["background"]),
        "object_iou": colour_mask_iou(render, "red", shot["mask"]),
    }


def mean_rows(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def render_all(model, prompt_of, shots, steps: int, tau: int, seed: int) -> list[np.ndarray]:
    return [
        synthesize(
            model,
            prompt_of(shot),
            shot["guide"],
            seed=seed + i,
            steps=steps,
            guidance=4.0,
            tau=tau,
        )
        for i, shot in enumerate(shots)
    ]


def table_spread(table: torch.Tensor) -> dict:
    """How far the TimeInv rows moved apart: cosine of each row with the mean row."""
    rows = torch.nn.functional.normalize(table.float(), dim=1)
    mean = torch.nn.functional.normalize(table.float().mean(0, keepdim=True), dim=1)
    cos = (rows @ mean.T).squeeze(1)
    return {"min_cos_to_mean": round(float(cos.min()), 4), "mean_cos": round(float(cos.mean()), 4)}


def bucketing_cost(model, table: torch.Tensor, sample_steps: int) -> dict:
    """Text-encoder runs and time for one render's conditioning, bucketed vs one row per step."""
    from diffusers import DDIMScheduler

    from story.models.timeinv import ConceptConditioner, TimeInvTable, tokenize_concepts

    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(sample_steps)
    encoder = model.text_encoder()
    tokens = tokenize_concepts(encoder, ["a <bob> on the grass"], model.config.max_text_length)
    out = {}
    for label, rows in (("bucketed", table), ("per_step", table[:1].repeat(1000, 1))):
        conditioner = ConceptConditioner(
            encoder, tokens, {"bob": TimeInvTable(rows)}, model.config.max_text_length
        )
        tick = time.perf_counter()
        for t in scheduler.timesteps:
            conditioner(int(t))
        out[label] = {
            "rows": int(rows.shape[0]),
            "encoder_runs": conditioner.encoder_runs,
            "conditioning_s": round(time.perf_counter() - tick, 4),
        }
    return out


def train_and_render(
    model, fingerprint, images, params, shots, phrase, sample_steps, regularization=()
):
    """Train bob with `params` and render "a <bob> <background>" on every shot (tau 0); the pack
    stays loaded. Returns the training result, the renders and the seconds of each part."""
    tick = time.monotonic()
    trained = train_concept(
        model,
        "bob",
        images,
        "sphere",
        params,
        base_checkpoint=fingerprint,
        regularization=regularization,
    )
    train_s = time.monotonic() - tick
    load_concepts(model, {"bob": trained.pack})
    tick = time.monotonic()
    renders = render_all(
        model, lambda s: f"a <bob> {phrase[s['background']]}", shots, sample_steps, 0, 0
    )
    return trained, renders, {"train_s": train_s, "render_s": time.monotonic() - tick}


def parse_spec(spec: str) -> dict:
    """`key=value,key=value` of ConceptParams fields (e.g. `method=timeinv_lora,lr_lora=1e-3`)."""
    types = {f.name: f.type for f in fields(ConceptParams)}
    out: dict = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise SystemExit(f"settings {spec!r}: {item!r} is not key=value of {sorted(types)}")
        kind = types[key]
        cast = str if kind in (str, "str") else int if kind in (int, "int") else float
        out[key] = cast(value)
    return out


def lr_specs(rates: list[float]) -> list[str]:
    """Both LoRA methods at each rate; rate 0 is the method without LoRA (the one to beat)."""
    return [
        f"method={m if lr > 0 else m.removesuffix('_lora')},lr_lora={lr:g}"
        for m in ("timeinv_lora", "ti_lora")
        for lr in rates
    ]


class RegularizationScenes:
    """Library-like clips of the class word (spheres in motion, with their captions): what
    `regularization_clips` retrieves from a miniworld library, rendered here from other seeds,
    each once however many settings use it."""

    def __init__(self, model) -> None:
        self.config = model.config
        self.depth = None
        self.clips: list[TrainingClip] = []

    def for_params(self, params: ConceptParams) -> list[TrainingClip]:
        """The first `params.reg_clips` scenes for a LoRA method; none for the others."""
        if not params.uses_lora:
            return []
        while len(self.clips) < params.reg_clips:
            self.clips.append(self._scene(regularization_seeds(len(self.clips) + 1)[-1]))
        return self.clips[: params.reg_clips]

    def _scene(self, seed: int) -> TrainingClip:
        cfg = self.config
        self.depth = self.depth or default_depth()
        spec = miniworld.sample_scene(
            seed, frames=cfg.frames, height=cfg.height, width=cfg.width, n_objects=1, shape="sphere"
        )
        rgb = miniworld.render(spec).rgb
        return TrainingClip.from_frames(rgb, miniworld.make_caption(spec), self.depth)


def validation_sweep(model, fingerprint, args, specs, images, ref_hist, ref_mean, phrase) -> dict:
    """Train bob with each spec's params and score it on validation shots (not the bench's), so
    settings are chosen without looking at the benchmark; rows merge into SWEEP_RESULTS."""
    cfg = model.config
    shots = guide_shots(args.shots, cfg.frames, cfg.height, start=0)
    sweep_seeds = shot_seeds(splits.VALIDATION, args.shots)
    seed_range = [sweep_seeds[0], sweep_seeds[-1] + 1]
    regularization = RegularizationScenes(model)
    rows: dict[str, dict] = {}
    for spec in specs:
        overrides = parse_spec(spec)
        params = ConceptParams(**{"steps": args.steps, "threads": args.threads, **overrides})
        trained, renders, _ = train_and_render(
            model,
            fingerprint,
            images,
            params,
            shots,
            phrase,
            args.sample_steps,
            regularization.for_params(params),
        )
        unload_concepts(model)
        scored = [score(r, s, ref_hist, ref_mean) for r, s in zip(renders, shots, strict=True)]
        rows[spec] = {
            **overrides,
            "params": asdict(params),  # the spec resolved against the defaults of the day
            **mean_rows(scored),
            "final_loss": trained.loss_curve[-1]["loss"] if trained.loss_curve else None,
        }
        print(json.dumps({spec: rows[spec]}), flush=True)
    if SWEEP_RESULTS.is_file():
        # Settings swept earlier on the same model and validation shots stay in the table.
        earlier = json.loads(SWEEP_RESULTS.read_text())
        same = (earlier.get("checkpoint_fingerprint"), earlier.get("train_steps")) == (
            fingerprint,
            args.steps,
        ) and earlier.get("validation_seeds") == seed_range
        if same:
            rows = {**earlier["rows"], **rows}
    return {
        "checkpoint_fingerprint": fingerprint,
        "train_steps": args.steps,
        "validation_seeds": seed_range,
        "sample_steps": args.sample_steps,
        "rows": rows,
    }


def vae_round_trip(model) -> dict:
    """Mean colour inside bob's mask before and after the model's VAE, for bob's own red and for
    the same sphere recoloured teal (a colour outside the miniature world's palette): whether a
    character could look like something the base model never saw."""
    bob = _bob_module()
    cfg = model.config
    spec = bob.bob_scene(100, "grass", cfg.height)
    spec = replace(spec, frames=cfg.frames)
    out = {}
    for name, rgb in (("red", None), ("teal", (20, 160, 150))):
        shown = spec
        if rgb is not None:  # white body, black stripes; the white repainted teal below
            main = replace(spec.objects[0], colour="white", secondary="black")
            shown = replace(spec, objects=(main,))
        clip = miniworld.render(shown)
        frames = clip.rgb.astype(np.float64)
        body = clip.masks == 1
        if rgb is not None:
            body &= frames.mean(-1) > 100
            frames[body] = frames[body] / miniworld.COLOURS["white"][0] * np.array(rgb)
        video = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)
        with torch.no_grad():
            latents = model.encode_video(video[None], torch.Generator().manual_seed(0))
            decoded = model.decode_latents(latents)[0]
        back = ((decoded.permute(1, 2, 3, 0).numpy() + 1) * 127.5).clip(0, 255)
        before, after = frames[body].mean(0), back[body].mean(0)
        out[name] = {
            "in": [round(float(v), 1) for v in before],
            "out": [round(float(v), 1) for v in after],
            "distance": round(float(np.linalg.norm(after - before)), 1),
        }
    return out


def std_rows(runs: list[dict]) -> dict:
    """Spread of each fidelity / placement measure over the training seeds (0 for one run)."""
    keys = ("fidelity_hist", "colour_distance", "object_iou", "fidelity_anywhere")
    return {k: round(float(np.std([r[k] for r in runs])), 4) for k in keys}


def tau_sweep(model, shots, phrase, sample_steps, ref_hist, ref_mean) -> dict:
    """The loaded concept rendered with structure guidance from each tau in TAUS on."""
    sweep = {}
    for tau in TAUS:
        swept = render_all(
            model, lambda s: f"a <bob> {phrase[s['background']]}", shots, sample_steps, tau, 0
        )
        sweep[str(tau)] = mean_rows(
            [score(r, s, ref_hist, ref_mean) for r, s in zip(swept, shots, strict=True)]
        )
    return sweep


def make_grid(rows: dict[str, list[np.ndarray]], guides: list[np.ndarray], out: Path) -> None:
    """Guide depth on top, then one row per method (middle frame of each shot), x3 nearest."""
    mid = guides[0].shape[0] // 2
    depth_row = [
        np.repeat(((g[mid] + 1) * 127.5).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
        for g in guides
    ]
    lines = [np.concatenate(depth_row, 1)]
    lines += [np.concatenate([r[mid] for r in renders], 1) for renders in rows.values()]
    sheet = np.concatenate(lines, 0)
    image = Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.NEAREST)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="tiny")
    parser.add_argument("--steps", type=int, default=200, help="training steps per method")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-demo", action="store_true", help="write the TimeInv+LoRA pack")
    parser.add_argument(
        "--params",
        default="",
        metavar="SPEC",
        help="ConceptParams for every method as key=value,... (default: ConceptParams'; pick "
        "them on validation shots with --sweep)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="training seeds per method (mean and spread)"
    )
    parser.add_argument(
        "--sweep-lora-lr",
        type=float,
        nargs="+",
        help="only sweep the LoRA learning rate of both LoRA methods on validation shots",
    )
    parser.add_argument(
        "--sweep",
        nargs="+",
        metavar="SPEC",
        help="only score these settings on validation shots; SPEC is key=value,... of "
        "ConceptParams (e.g. method=timeinv_lora,lr_lora=1e-3,lora_targets=cross_kv)",
    )
    parser.add_argument(
        "--bucketing-only", action="store_true", help="only re-measure the bucketing cost"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_t2v(args.checkpoint, device="cpu")
    if args.bucketing_only:
        results = json.loads(RESULTS.read_text())
        table = torch.randn(ConceptParams().buckets, model.text_encoder().dim)
        results["bucketing"]["cost"] = bucketing_cost(model, table, results["sample_steps"])
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["bucketing"], indent=2))
        return
    cfg = model.config
    fingerprint = model_fingerprint(model)
    images = read_concept_images(IMAGES)
    ref_hist, ref_mean = reference_look(cfg.height)
    phrase = {bg: BACKGROUND_WORDS[bg][0] for bg in miniworld.BACKGROUNDS}
    if args.sweep_lora_lr or args.sweep:
        specs = lr_specs(args.sweep_lora_lr or []) + list(args.sweep or [])
        sweep = validation_sweep(
            model, fingerprint, args, specs, images, ref_hist, ref_mean, phrase
        )
        SWEEP_RESULTS.write_text(json.dumps(sweep, indent=2) + "\n")
        return
    shots = guide_shots(args.shots, cfg.frames, cfg.height)
    overrides = parse_spec(args.params)
    results: dict = {
        "checkpoint": str(args.checkpoint),
        "checkpoint_fingerprint": fingerprint,
        "train_steps": args.steps,
        "params_spec": args.params,
        "params": asdict(ConceptParams(**{"steps": args.steps, **overrides})),
        "training_seeds": args.seeds,
        "images_with_object_masks": sum(m is not None for m in images.masks),
        "shots": args.shots,
        "sample_steps": args.sample_steps,
        "reference_hist": {
            n: round(float(v), 3) for n, v in zip(COLOUR_NAMES, ref_hist, strict=True) if v
        },
        "methods": {},
    }
    grid: dict[str, list[np.ndarray]] = {}
    tick = time.monotonic()
    renders = render_all(
        model,
        lambda s: f"a red striped sphere {phrase[s['background']]}",
        shots,
        args.sample_steps,
        0,
        0,
    )
    results["methods"]["described"] = {
        **mean_rows([score(r, s, ref_hist, ref_mean) for r, s in zip(renders, shots, strict=True)]),
        "render_s": round(time.monotonic() - tick, 1),
    }
    grid["described"] = renders
    packs = {}
    regularization = RegularizationScenes(model)
    for method in METHODS:
        runs, seconds_of = [], []
        # `none` trains nothing, so one run is all of it; the others train once per seed.
        for seed in range(1 if method == "none" else args.seeds):
            params = ConceptParams(
                **{"threads": args.threads, **overrides},
                **{"method": method, "steps": args.steps, "seed": seed},
            )
            trained, renders, seconds = train_and_render(
                model,
                fingerprint,
                images,
                params,
                shots,
                phrase,
                args.sample_steps,
                regularization.for_params(params),
            )
            rows = [score(r, s, ref_hist, ref_mean) for r, s in zip(renders, shots, strict=True)]
            runs.append({**mean_rows(rows), "seed": seed})
            seconds_of.append(seconds)
            if seed == 0:
                # The first seed's pack gives the grid, the tau sweep and the table spread.
                packs[method], grid[method], first = trained.pack, renders, trained
                if method == "timeinv_lora":
                    results["tau_sweep_timeinv_lora"] = tau_sweep(
                        model, shots, phrase, args.sample_steps, ref_hist, ref_mean
                    )
            unload_concepts(model)
        entry = {
            **mean_rows([{k: v for k, v in run.items() if k != "seed"} for run in runs]),
            "std_over_seeds": std_rows(runs),
            "per_seed": runs,
            "train_s": round(float(np.mean([s["train_s"] for s in seconds_of])), 1),
            "render_s": round(float(np.mean([s["render_s"] for s in seconds_of])), 1),
            "final_loss": first.loss_curve[-1]["loss"] if first.loss_curve else None,
            "loss_curve": [round(r["loss"], 4) for r in first.loss_curve],
        }
        if method.startswith("timeinv"):
            entry["table"] = table_spread(packs[method].table)
        results["methods"][method] = entry
        print(json.dumps({method: entry}), flush=True)
    results["bucketing"] = {
        "buckets": packs["timeinv"].table.shape[0],
        "bucket_width_timesteps": 1000 // packs["timeinv"].table.shape[0],
        "cost": bucketing_cost(model, packs["timeinv"].table, args.sample_steps),
    }
    results["vae_round_trip"] = vae_round_trip(model)
    results["grid_rows"] = ["guide depth", *grid]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    make_grid(grid, [s["guide"] for s in shots], GRID)
    if args.save_demo:
        packs["timeinv_lora"].save(DEMO_PACK)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
