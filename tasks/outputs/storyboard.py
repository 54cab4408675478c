"""The storyboard: one self-contained HTML page per render, one section per plot.

Each section shows the plot's poster frame, its text, query and prompt, the retrieved clip, the
structure guide (depth colour-mapped) and the generated frames as PNG film strips under
`<out_dir>/storyboard/`, with its record timecodes at the delivery rate. Pages are Jinja2
templates (`templates/`) with autoescaping on: no scripts, no external URLs, and a story's
text cannot inject markup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from story.tasks.outputs.files import write_atomic
from story.tasks.outputs.imaging import colorize_structure, film_strip, png_bytes
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.script.story import Story

IMAGE_DIR = "storyboard"
STORYBOARD = "storyboard.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    """The page templates, autoescaped, failing loudly on a name a template does not get."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _relative(out_dir: Path, target: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), out_dir.resolve())).as_posix()


def _figure(out_dir: Path, name: str, frames: np.ndarray | None, caption: str) -> dict:
    if frames is None:
        return {"src": None, "caption": caption, "frames": 0}
    path = write_atomic(out_dir / IMAGE_DIR / name, png_bytes(film_strip(frames)))
    return {"src": path.relative_to(out_dir).as_posix(), "caption": caption, "frames": len(frames)}


def plot_view(
    out_dir: Path,
    record: PlotRecord,
    prefix: str = "",
    poster: str | None = None,
    timecodes: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """What the template shows of one plot; its film strips are written under `storyboard/`."""
    stem = f"{prefix}plot_{record.index:03d}"
    structure = None if record.structure is None else colorize_structure(record.structure)
    figures = [
        _figure(out_dir, f"{stem}_retrieved.png", record.retrieved_frames, "retrieved clip"),
        _figure(out_dir, f"{stem}_structure.png", structure, "structure guide"),
    ]
    candidates = record.candidates
    for n, clip in enumerate(candidates):
        label = "generated" if len(candidates) == 1 else f"generated, candidate {n + 1}"
        figures.append(_figure(out_dir, f"{stem}_generated_{n}.png", clip, label))
    delivered = None
    if record.delivered is not None and timecodes is not None:
        delivered = {
            "video": _relative(out_dir, record.delivered.video_path),
            "name": Path(record.delivered.video_path).name,
            "frames": record.delivered.frames,
            "record_in": timecodes[0],
            "record_out": timecodes[1],
        }
    return {
        "index": record.index,
        "number": record.index + 1,
        "text": record.text,
        "query": record.query,
        "prompt": record.prompt,
        "clip_id": record.clip_id,
        "clip_caption": record.clip_caption,
        "clip_uri": record.clip_uri,
        "video": _relative(out_dir, record.video_path) if record.video_path else None,
        "video_name": Path(record.video_path).name if record.video_path else None,
        "delivered": delivered,
        "poster": poster,
        "figures": figures,
        "params": sorted((str(k), str(v)) for k, v in record.params.items()),
    }


def write_storyboard(
    out_dir: str | os.PathLike[str],
    story: Story,
    records: Sequence[PlotRecord],
    render_id: str | None = None,
    stills: Mapping[str, Any] | None = None,
    delivery: Mapping[str, str] | None = None,
    timecodes: Mapping[int, tuple[str, str]] | None = None,
) -> Path:
    """Write `out_dir/storyboard.html` (+ PNG strips in `out_dir/storyboard/`) and return it.

    `stills` (from `write_stills`) adds poster frames and the contact sheet; `delivery` (rate,
    retime, record_in, record_out) and per-plot record `timecodes` add the editorial timing.
    """
    out = Path(out_dir)
    ordered = sorted(records, key=lambda r: r.index)
    posters = list((stills or {}).get("plot_posters", [None] * len(ordered)))
    plots = [
        plot_view(out, record, poster=poster, timecodes=(timecodes or {}).get(record.index))
        for record, poster in zip(ordered, posters, strict=True)
    ]
    page = (
        templates()
        .get_template("storyboard.html.j2")
        .render(
            title=story.title,
            source=story.source,
            render_id=render_id,
            delivery=delivery,
            contact_sheet=(stills or {}).get("contact_sheet"),
            plots=plots,
        )
    )
    return write_atomic(out / STORYBOARD, page)


def write_comparison(
    out_path: str | os.PathLike[str],
    story: Story,
    runs: Sequence[tuple[str, Sequence[PlotRecord]]],
) -> Path:
    """A side-by-side page: one row per plot, one column per labelled run (e.g. checkpoints)."""
    path = Path(out_path)
    out = path.parent
    by_run = [{r.index: r for r in records} for _label, records in runs]
    indices = sorted({i for records in by_run for i in records})
    rows = [
        [
            plot_view(out, records[index], prefix=f"run{n}_") if index in records else None
            for n, records in enumerate(by_run)
        ]
        for index in indices
    ]
    page = (
        templates()
        .get_template("comparison.html.j2")
        .render(title=f"{story.title}: comparison", labels=[label for label, _ in runs], rows=rows)
    )
    return write_atomic(path, page)
