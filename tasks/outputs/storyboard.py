"""The storyboard: one self-contained HTML page per render, one section per plot.

Each section shows the plot text, its query and prompt, the retrieved clip, the structure
guide (depth colour-mapped) and the generated frames as PNG film strips under
`<out_dir>/storyboard/`, referenced by relative links. No scripts, no external URLs; every
piece of text is HTML-escaped, so a story cannot inject markup.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from story.tasks.outputs.assemble import AssemblyError, PlotRecord, check_frames, write_atomic
from story.tasks.script.parse import Story

STRIP_FRAMES = 8
STRIP_GAP = 2
IMAGE_DIR = "storyboard"

_STYLE = """
body { font-family: sans-serif; margin: 24px; background: #fafafa; color: #222; }
header { margin-bottom: 16px; }
section.plot { background: #fff; border: 1px solid #ddd; border-radius: 6px;
  padding: 12px 16px; margin-bottom: 16px; }
section.plot h2 { font-size: 1.1em; margin: 0 0 8px 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px 0; }
dt { font-weight: bold; color: #555; }
dd { margin: 0; }
code { font-size: 0.9em; }
figure { margin: 6px 0; }
figcaption { font-size: 0.85em; color: #555; }
img.strip { height: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
td, th { padding: 2px 8px; text-align: left; font-size: 0.9em; }
.missing { color: #a33; font-style: italic; }
"""


def colorize_structure(structure: np.ndarray) -> np.ndarray:
    """(T,H,W) guide in [-1, 1] -> (T,H,W,3) uint8 RGB with the inferno colour map."""
    values = np.asarray(structure, dtype=np.float32)
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 3 or min(values.shape) < 1:
        raise AssemblyError(f"structure: expected (T,H,W) values, got shape {values.shape}")
    scaled = np.nan_to_num((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.stack(
        [
            cv2.cvtColor(cv2.applyColorMap(f, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
            for f in scaled
        ]
    )


def film_strip(frames: np.ndarray, count: int = STRIP_FRAMES) -> np.ndarray:
    """Up to `count` evenly spaced frames side by side, separated by white gaps."""
    frames = check_frames(frames, "film strip")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    height, width = frames.shape[1:3]
    strip = np.full(
        (height, len(picks) * width + (len(picks) - 1) * STRIP_GAP, 3), 255, dtype=np.uint8
    )
    for slot, index in enumerate(picks):
        x = slot * (width + STRIP_GAP)
        strip[:, x : x + width] = frames[index]
    return strip


def _save_png(image: np.ndarray, path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _figure(out_dir: Path, name: str, frames: np.ndarray | None, caption: str) -> str:
    if frames is None:
        return f'<figure><p class="missing">no {_esc(caption)}</p></figure>'
    path = out_dir / IMAGE_DIR / name
    _save_png(film_strip(frames), path)
    rel = path.relative_to(out_dir).as_posix()
    return (
        f'<figure><img class="strip" src="{_esc(rel)}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)} ({len(frames)} frames)</figcaption></figure>"
    )


def _link(out_dir: Path, target: Path | None, label: str) -> str:
    if target is None:
        return ""
    rel = Path(os.path.relpath(Path(target).resolve(), out_dir.resolve())).as_posix()
    return f'<a href="{_esc(rel)}">{_esc(label)}</a>'


def plot_section(out_dir: Path, record: PlotRecord, prefix: str = "") -> str:
    """The HTML of one plot; its images are written under `out_dir/storyboard/`."""
    stem = f"{prefix}plot_{record.index:03d}"
    rows = [
        ("text", _esc(record.text)),
        ("query", f"<code>{_esc(record.query)}</code>"),
        ("prompt", f"<code>{_esc(record.prompt)}</code>"),
        ("clip", f"<code>{_esc(record.clip_id)}</code> {_esc(record.clip_caption)}"),
        ("source", _esc(record.clip_uri)),
    ]
    if record.video_path is not None:
        rows.append(("video", _link(out_dir, record.video_path, Path(record.video_path).name)))
    params = "".join(
        f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>"
        for k, v in sorted(record.params.items())
    )
    structure = None if record.structure is None else colorize_structure(record.structure)
    figures = [
        _figure(out_dir, f"{stem}_retrieved.png", record.retrieved_frames, "retrieved clip"),
        _figure(out_dir, f"{stem}_structure.png", structure, "structure guide"),
    ]
    candidates = record.candidates
    for n, clip in enumerate(candidates):
        label = "generated" if len(candidates) == 1 else f"generated, candidate {n + 1}"
        figures.append(_figure(out_dir, f"{stem}_generated_{n}.png", clip, label))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<section class="plot" id="plot-{record.index}" data-plot="{record.index}">'
        f"<h2>Plot {record.index + 1}</h2><dl>{items}</dl>{''.join(figures)}"
        + (
            f"<details><summary>parameters</summary><table>{params}</table></details>"
            if params
            else ""
        )
        + "</section>"
    )


def _page(title: str, header: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><header>{header}</header>{body}</body></html>\n"
    )


def write_storyboard(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    render_id: str | None = None,
) -> Path:
    """Write `out_dir/storyboard.html` (+ PNG strips in `out_dir/storyboard/`) and return it."""
    out = Path(out_dir)
    header = (
        f"<h1>{_esc(story.title)}</h1>"
        f"<p>{len(records)} plots from <code>{_esc(story.source)}</code>"
    )
    if render_id:
        header += f", render <code>{_esc(render_id)}</code>"
    header += "</p>"
    body = "".join(plot_section(out, record) for record in sorted(records, key=lambda r: r.index))
    return write_atomic(out / "storyboard.html", _page(story.title, header, body))


def write_comparison(
    out_path: str | os.PathLike[str],
    story: Story,
    runs: Sequence[tuple[str, Sequence[PlotRecord]]],
) -> Path:
    """A side-by-side page: one row per plot, one column per labelled run (e.g. checkpoints)."""
    path = Path(out_path)
    out = path.parent
    by_run = [(label, {r.index: r for r in records}) for label, records in runs]
    indices = sorted({i for _label, records in by_run for i in records})
    head = "".join(f"<th>{_esc(label)}</th>" for label, _records in by_run)
    rows = []
    for index in indices:
        cells = []
        for n, (_label, records) in enumerate(by_run):
            record = records.get(index)
            cells.append(
                "<td>"
                + (plot_section(out, record, prefix=f"run{n}_") if record else "<p>-</p>")
                + "</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = f"<h1>{_esc(story.title)}: comparison</h1>"
    body = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    return write_atomic(path, _page(f"{story.title}: comparison", header, body))
