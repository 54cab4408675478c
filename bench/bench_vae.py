"""Does the autoencoder keep colours? Object colour after a VAE round trip, in and off the palette.

For validation-split scenes (single main object), the object's mean colour inside its mask
(eroded by one pixel, so edges do not count) is compared before and after encode -> decode,
on the scene as rendered (palette colours) and with every object recoloured by a random colour
map (colours no caption names). Target: off-palette colours within 20 RGB units.

`--judge-scenes N` also asks the judge (the evaluation's reader) what it sees in N 16-frame
scenes of the split before and after the round trip: shape, colour and texture as the caption
states them, each with its 95% interval, and the paired drop. A render decoded by this
autoencoder cannot score above the round trip, so this is the latent's ceiling on the
synthesis table's appearance columns. The same scenes give the round trip's warp error against
the real clip's (`tasks/evaluation/temporal.py`): how much flicker the decoder alone adds, the
floor of the synthesis table's warp column.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from story.models.vae import (
    decode_video,
    encode_video,
    frames_to_vae_input,
    load_vae,
    vae_output_to_frames,
)
from story.tasks.evaluation.intervals import mean_interval
from story.tasks.evaluation.sealed import open_sealed_run
from story.tasks.hashing import sha256_tree
from story.tasks.training.t2v_data import recolour
from story.tasks.world import miniworld, splits

RESULTS = Path(__file__).resolve().parent / "results" / "vae.json"


@torch.no_grad()
def round_trip(vae, rgb: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> the same frames after encode (mode) and decode."""
    video = frames_to_vae_input(torch.from_numpy(rgb)).permute(1, 0, 2, 3)[None]
    latents = encode_video(vae, video, 1.0, sample=False)
    out = decode_video(vae, latents, 1.0)[0].permute(1, 0, 2, 3)
    return vae_output_to_frames(out).numpy()


def colour_errors(vae, rgb: np.ndarray, masks: np.ndarray) -> list[float]:
    """Per object: distance (RGB units) between its mean colour before and after."""
    back = round_trip(vae, rgb).astype(np.float32)
    errors = []
    for label in np.unique(masks[masks > 0]):
        inside = ndimage.binary_erosion(masks == label, structure=np.ones((1, 3, 3)))
        if inside.sum() < 6:
            continue
        before = rgb[inside].astype(np.float32).mean(0)
        errors.append(float(np.linalg.norm(back[inside].mean(0) - before)))
    return errors


def judged(vae, split: str, scenes: int, size: int) -> dict:
    """The judge's shape / colour / texture reading of real clips and of their round trips."""
    from story.tasks.evaluation.clip_scores import score_clips
    from story.tasks.evaluation.intervals import paired_difference
    from story.tasks.evaluation.judge_reader import JudgeReader
    from story.tasks.evaluation.temporal import clip_temporal

    reader = JudgeReader.load()
    real, back, targets, masks = [], [], [], []
    for seed in splits.seeds(split, "scenes", scenes):
        spec = miniworld.sample_scene(seed, frames=16, height=size, width=size)
        clip = miniworld.render(spec)
        real.append(clip.rgb)
        back.append(round_trip(vae, clip.rgb))
        targets.append(miniworld.attributes(spec))
        masks.append(clip.masks == 1)
    before, _ = score_clips(reader, real, targets, masks)
    after, _ = score_clips(reader, back, targets, masks)
    readings = {
        name: {
            "real": mean_interval(before[name]),
            "round_trip": mean_interval(after[name]),
            "round_trip_minus_real": paired_difference(after[name], before[name]),
        }
        for name in ("shape", "colour", "texture", "all six")
    }
    warp_real = np.array([clip_temporal(clip)["warp_error"] for clip in real])
    warp_back = np.array([clip_temporal(clip)["warp_error"] for clip in back])
    readings["warp error"] = {
        "real": mean_interval(warp_real),
        "round_trip": mean_interval(warp_back),
        "round_trip_over_real": mean_interval(warp_back / np.maximum(warp_real, 1e-6)),
    }
    return readings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, help="AutoencoderKL folder (or a bundle's vae/)")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--split",
        default=splits.VALIDATION,
        choices=splits.SPLITS,
        help="validation (every choice) | test (sealed: recorded in the ledger, once per VAE)",
    )
    parser.add_argument("--rerun-sealed", action="store_true", help="score the test split again")
    parser.add_argument(
        "--judge-scenes", type=int, default=0, help="also judge N 16-frame scenes (0: off)"
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    vae = load_vae(args.vae).eval()
    if args.split == splits.TEST:
        weights = Path(args.vae)
        model_id = f"{weights.resolve().parent.name}/{weights.name}@{sha256_tree(weights)[:12]}"
        open_sealed_run("vae", model_id, rerun=args.rerun_sealed, details={"scenes": args.scenes})
    rng = np.random.default_rng(0)
    found: dict[str, list[float]] = {"palette": [], "off_palette": []}
    tick = time.monotonic()
    for seed in splits.seeds(args.split, "images", args.scenes):
        spec = miniworld.sample_scene(seed, frames=2, height=args.size, width=args.size)
        clip = miniworld.render(spec)
        found["palette"] += colour_errors(vae, clip.rgb, clip.masks)
        shifted = recolour(clip.rgb, clip.masks, rng, 1.0)
        found["off_palette"] += colour_errors(vae, shifted, clip.masks)
    result = {
        "benchmark": "vae",
        "vae": str(args.vae),
        "split": args.split,
        "scenes": args.scenes,
        "seconds": round(time.monotonic() - tick, 1),
        "target_off_palette_rgb": 20.0,
    }
    for name, errors in found.items():
        values = np.asarray(errors)
        result[name] = {
            "objects": int(values.size),
            "mean_rgb_error": mean_interval(values),
            "median_rgb_error": float(np.median(values)),
            "p90_rgb_error": float(np.percentile(values, 90)),
            "share_within_20": mean_interval((values <= 20).astype(float)),
        }
    if args.judge_scenes:
        result["judged"] = {"scenes": args.judge_scenes}
        result["judged"].update(judged(vae, args.split, args.judge_scenes, args.size))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
