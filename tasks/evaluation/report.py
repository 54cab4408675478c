"""An evaluation report: report.json, a self-contained report.html and report.md in one folder.

Every `story eval` area writes the same shape: a summary (what was scored, on which split, with
which models and how long it took), tables whose cells carry a 95% interval, and frame grids
(inline PNGs, so the page opens anywhere without its folder). report.json also records the code
that produced it: the git commit (and whether the tree was dirty), package versions, and a
content hash of each code folder (flows, tasks, models), so a figure is tied to the search and
model code it measured even from an uncommitted tree.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from story.tasks.hashing import to_plain
from story.tasks.provenance.environment import environment_info
from story.tasks.settings import REPO_ROOT

CODE_FOLDERS = ("flows", "tasks", "models")


@dataclass
class Table:
    """Rows of named cells; a cell is an interval dict ({"mean", "low", "high", ...} or
    {"difference", ...} or {"ratio", ...} or {"fvd", ...}) or a plain value."""

    title: str
    columns: list[str]
    rows: dict[str, dict[str, Any]]
    note: str = ""


@dataclass
class Grid:
    """Labelled rows of clips (T, H, W, 3) uint8; `frames` evenly spaced frames of each clip."""

    title: str
    rows: list[tuple[str, list[np.ndarray]]]
    frames: int = 4
    zoom: int = 3
    columns: list[str] = field(default_factory=list)


def cell_text(cell: Any) -> str:
    """'0.62 [0.58, 0.66]' for an interval, the value otherwise."""
    if isinstance(cell, dict):
        for key in ("mean", "difference", "ratio", "fvd"):
            if key in cell:
                text = f"{cell[key]:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"
                return text + (" *" if cell.get("significant") else "")
        return json.dumps(cell)
    if isinstance(cell, float):
        return f"{cell:.3f}"
    return "" if cell is None else str(cell)


def strip(clip: np.ndarray, frames: int) -> np.ndarray:
    """`frames` evenly spaced frames of a clip side by side, separated by a 1-pixel gap."""
    idx = np.linspace(0, len(clip) - 1, frames).round().astype(int)
    gap = np.full((clip.shape[1], 1, 3), 255, np.uint8)
    parts = []
    for i in idx:
        parts += [clip[i], gap]
    return np.concatenate(parts[:-1], axis=1)


def grid_png(grid: Grid) -> bytes:
    """One PNG: a row per label, one strip per clip; clips are resized to the first's size."""
    first = grid.rows[0][1][0]
    h, w = first.shape[1:3]
    lines = []
    for _, clips in grid.rows:
        strips = []
        for clip in clips:
            if clip.shape[1:3] != (h, w):
                clip = np.stack([np.asarray(Image.fromarray(f).resize((w, h))) for f in clip])
            strips.append(strip(clip, grid.frames))
            strips.append(np.full((h, 4, 3), 255, np.uint8))
        lines.append(np.concatenate(strips[:-1], axis=1))
        lines.append(np.full((2, lines[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(lines[:-1], axis=0)
    image = Image.fromarray(sheet)
    image = image.resize((image.width * grid.zoom, image.height * grid.zoom), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def table_markdown(table: Table) -> str:
    """A table as Markdown (cells as `mean [low, high]`), for docs and the README."""
    lines = [f"**{table.title}**", ""]
    lines.append("| | " + " | ".join(table.columns) + " |")
    lines.append("|---" * (len(table.columns) + 1) + "|")
    for name, cells in table.rows.items():
        lines.append(
            f"| {name} | " + " | ".join(cell_text(cells.get(c)) for c in table.columns) + " |"
        )
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *table.columns])
    body = []
    for name, cells in table.rows.items():
        tds = "".join(f"<td>{html.escape(cell_text(cells.get(c)))}</td>" for c in table.columns)
        body.append(f"<tr><th>{html.escape(name)}</th>{tds}</tr>")
    note = f"<p class='note'>{html.escape(table.note)}</p>" if table.note else ""
    return f"<h2>{html.escape(table.title)}</h2>{note}<table><tr>{head}</tr>{''.join(body)}</table>"


def _grid_html(grid: Grid) -> str:
    data = base64.b64encode(grid_png(grid)).decode("ascii")
    labels = "".join(f"<li>{html.escape(label)}</li>" for label, _ in grid.rows)
    columns = f"<p class='note'>columns: {html.escape(', '.join(grid.columns))}</p>"
    return (
        f"<h2>{html.escape(grid.title)}</h2>{columns if grid.columns else ''}"
        f"<p class='note'>rows, top to bottom:</p><ol>{labels}</ol>"
        f"<img alt='{html.escape(grid.title)}' src='data:image/png;base64,{data}'>"
    )


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{border:1px solid #bbb;padding:.25em .5em;text-align:right;font-size:90%}"
    "th:first-child{text-align:left}.note{color:#555;font-size:90%}img{image-rendering:pixelated}"
)


def code_hashes(root: Path = REPO_ROOT) -> dict[str, str]:
    """sha256 over every .py file (path and bytes, in path order) of each code folder."""
    hashes = {}
    for name in CODE_FOLDERS:
        digest = hashlib.sha256()
        for path in sorted((root / name).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        hashes[name] = digest.hexdigest()
    return hashes


def code_record() -> dict[str, Any]:
    """What code produced a report: git commit and dirty flag, packages, folder hashes."""
    return {**environment_info(), "code_sha256": code_hashes()}


def write_report(
    folder: str | Path, title: str, summary: dict[str, Any], tables: list[Table], grids: list[Grid]
) -> dict[str, str]:
    """Write report.json and report.html into `folder`; returns their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "title": title,
        "summary": summary,
        "tables": [asdict(t) for t in tables],
        "code": code_record(),
    }
    json_path, html_path = out / "report.json", out / "report.html"
    (out / "report.md").write_text(f"# {title}\n\n" + "\n".join(table_markdown(t) for t in tables))
    json_path.write_text(json.dumps(to_plain(doc), indent=2) + "\n")
    items = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(json.dumps(to_plain(v)))}</li>"
        for k, v in summary.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>"
        "<p class='note'>Cells: mean [95% interval]; * marks a difference whose interval "
        "excludes 0.</p>"
        + "".join(_table_html(t) for t in tables)
        + "".join(_grid_html(g) for g in grids)
        + "</body></html>\n"
    )
    html_path.write_text(page)
    return {"json": str(json_path), "html": str(html_path)}
