"""Poster frames and the contact sheet: the pictures that stand for plots and for a render.

Each plot's poster is its middle frame scaled up to POSTER_WIDTH (storyboard, asset browsers);
the render's `poster.png` is the first plot's poster at RENDER_POSTER_WIDTH, and
`contact_sheet.png` tiles every plot's poster with its number and record timecode burnt in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from story.tasks.outputs.burn_in import BOTTOM_LEFT, burn_text
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.files import write_atomic
from story.tasks.outputs.imaging import png_bytes, poster_index, resize, size_for_width

POSTER_WIDTH = 256
RENDER_POSTER_WIDTH = 512
SHEET_COLUMNS = 4
SHEET_GAP = 4
RESAMPLING = "bilinear"
"""Upscaling filter for stills and review proxies (bench/bench_proxy.py, docs/editorial.md)."""
POSTER = "poster.png"
CONTACT_SHEET = "contact_sheet.png"


def poster(
    frames: np.ndarray, width: int = POSTER_WIDTH, resampling: str = RESAMPLING
) -> np.ndarray:
    """A clip's middle frame scaled to `width` (aspect kept)."""
    frame = frames[poster_index(frames)]
    return resize(frame, size_for_width(frame.shape, width), resampling)


def contact_sheet(
    posters: Sequence[np.ndarray], labels: Sequence[str], columns: int = SHEET_COLUMNS
) -> np.ndarray:
    """Posters in rows of `columns` on white, each letterboxed to the largest and labelled."""
    if not posters or len(posters) != len(labels):
        raise AssemblyError(f"contact sheet: {len(posters)} posters for {len(labels)} labels")
    height = max(p.shape[0] for p in posters)
    width = max(p.shape[1] for p in posters)
    columns = max(1, min(columns, len(posters)))
    rows = math.ceil(len(posters) / columns)
    sheet = np.full(
        (rows * height + (rows + 1) * SHEET_GAP, columns * width + (columns + 1) * SHEET_GAP, 3),
        255,
        np.uint8,
    )
    for n, (image, label) in enumerate(zip(posters, labels, strict=True)):
        tile = np.zeros((height, width, 3), np.uint8)
        top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
        tile[top : top + image.shape[0], left : left + image.shape[1]] = image
        y = SHEET_GAP + (n // columns) * (height + SHEET_GAP)
        x = SHEET_GAP + (n % columns) * (width + SHEET_GAP)
        sheet[y : y + height, x : x + width] = burn_text(tile, label, BOTTOM_LEFT)
    return sheet


def write_stills(
    out_dir: str | os.PathLike[str],
    plot_frames: Sequence[np.ndarray],
    labels: Sequence[str],
    plot_names: Sequence[str],
) -> dict[str, object]:
    """Write each plot's poster (`storyboard/<name>_poster.png`), `poster.png` and
    `contact_sheet.png`; returns their paths relative to `out_dir`."""
    out = Path(out_dir)
    posters = [poster(frames) for frames in plot_frames]
    plot_posters = []
    for name, image in zip(plot_names, posters, strict=True):
        path = write_atomic(out / "storyboard" / f"{name}_poster.png", png_bytes(image))
        plot_posters.append(path.relative_to(out).as_posix())
    write_atomic(out / POSTER, png_bytes(poster(plot_frames[0], RENDER_POSTER_WIDTH)))
    write_atomic(out / CONTACT_SHEET, png_bytes(contact_sheet(posters, labels)))
    return {"poster": POSTER, "contact_sheet": CONTACT_SHEET, "plot_posters": plot_posters}
