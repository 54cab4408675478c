"""The picture of a `story rerender` comparison: the same plots on two checkpoints, side by side.

One row per plot: four evenly spaced frames of the original render, then four of the re-render,
each enlarged, with the plot number and the checkpoint's name burnt into the first frame of each
half. Both renders are read from their own folders (their manifest names each plot's video).

Run: python datasets/make_checkpoint_preview.py ORIGINAL_FOLDER RERENDER_FOLDER \
    --out datasets/preview/t2v64f4_vs_t2v64.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from story.tasks.outputs.burn_in import TOP_LEFT, burn_text
from story.tasks.outputs.imaging import film_strip, png_bytes, resize
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.manifest import read_manifest

FRAMES = 4
WIDTH = 128
GAP = 12


def plot_strips(folder: Path, width: int = WIDTH, label: str | None = None) -> list[np.ndarray]:
    """One film strip per plot of a render folder, labelled with the plot and its checkpoint
    (or `label`, for two renders on the same checkpoint)."""
    manifest = read_manifest(folder)
    name = label or manifest["inputs"]["checkpoint"]["name"]
    strips = []
    for plot in sorted(manifest["plots"], key=lambda p: int(p["index"])):
        frames = read_mp4(folder / plot["video"])
        height = round(frames.shape[1] * width / frames.shape[2])
        picks = np.linspace(0, len(frames) - 1, FRAMES).round().astype(int)
        big = np.stack([resize(frames[i], (height, width), "nearest") for i in picks])
        big[0] = burn_text(big[0], f"{int(plot['index']) + 1} {name}", TOP_LEFT)
        strips.append(film_strip(big, FRAMES))
    return strips


def comparison_picture(
    original: Path, rerender: Path, labels: tuple[str, str] | None = None
) -> np.ndarray:
    """Rows of [original strip | re-render strip], white between them."""
    before = plot_strips(original, label=labels[0] if labels else None)
    after = plot_strips(rerender, label=labels[1] if labels else None)
    if len(before) != len(after):
        raise SystemExit(f"{original} has {len(before)} plots, {rerender} has {len(after)}")
    rows = []
    for a, b in zip(before, after, strict=True):
        height = max(a.shape[0], b.shape[0])
        row = np.full((height, a.shape[1] + GAP + b.shape[1], 3), 255, np.uint8)
        row[: a.shape[0], : a.shape[1]] = a
        row[: b.shape[0], a.shape[1] + GAP :] = b
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    sheet = np.full(
        (sum(r.shape[0] for r in rows) + GAP * (len(rows) - 1), width, 3), 255, np.uint8
    )
    y = 0
    for row in rows:
        sheet[y : y + row.shape[0], : row.shape[1]] = row
        y += row.shape[0] + GAP
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path, help="The original render's folder.")
    parser.add_argument("rerender", type=Path, help="The re-render's folder.")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write.")
    parser.add_argument(
        "--labels",
        nargs=2,
        metavar=("ORIGINAL", "RERENDER"),
        help="Names burnt in instead of the checkpoints' (two renders on one checkpoint).",
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labels = tuple(args.labels) if args.labels else None
    args.out.write_bytes(png_bytes(comparison_picture(args.original, args.rerender, labels)))
    print(args.out)


if __name__ == "__main__":
    main()
