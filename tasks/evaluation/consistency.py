"""`story eval consistency RENDER`: does a render's character stay itself, and its place hold?

Read from a finished render's plot videos by the frozen judge (`checkpoints/judge-tiny`, which
knows the miniature world only, so this measures renders of the embedded default models):

- **Character.** A plot's *look* is what the judge reads of its main object: the shape, colour
  and texture probabilities, joined and L2-normalised. For each concept the render uses, every
  plot that names it is compared with the character's own images (its pack's sheet, each held
  still as a clip: cosine similarity of looks) and with the other plots naming it (mean pairwise
  similarity, and whether the judge names the same shape, colour and texture in both).
- **Place.** The ground the judge reads in each plot, against the ground the plot's prompt
  names (`find_place`, mapped to the world's grounds), and between consecutive plots whose
  prompts name the same place (they should agree; a plot naming a new place may change it).

Writes report.json / report.html (tables and a frame grid of the sheet beside each plot) into
`<render>/consistency/` or `out`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.errors import StoryError
from story.tasks.evaluation.judge_reader import JudgeReader, JudgeReading
from story.tasks.evaluation.report import Grid, Table, write_report

LOOK = ("shape", "colour", "texture")
FOLDER = "consistency"


def looks(reading: JudgeReading) -> np.ndarray:
    """(N, D) unit vectors of the judge's shape, colour and texture probabilities."""
    joined = np.concatenate([reading.probabilities[name] for name in LOOK], axis=1)
    return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)


def world_ground(place: str | None) -> str | None:
    """The miniature world's ground a place phrase names ('on the sandy beach' -> sand), by the
    world's own ground words; None for a place the world has no ground for."""
    from story.tasks.world.captions import BACKGROUND_EXTRA

    if not place:
        return None
    words = set(place.lower().split())
    found = [ground for ground, names in BACKGROUND_EXTRA.items() if words & set(names)]
    return found[0] if len(found) == 1 else None


def _read_plots(root: Path, manifest: dict[str, Any]) -> list[np.ndarray]:
    from story.tasks.outputs.video_io import read_mp4

    clips = []
    for plot in manifest["plots"]:
        video = plot.get("video")
        path = root / video if video else None
        if path is None or not path.is_file():
            raise StoryError(f"{root}: plot {plot['index'] + 1} has no video ({video!r})")
        clips.append(read_mp4(path))
    return clips


def _sheet(concept: dict[str, Any], given: dict[str, Path]) -> Path | None:
    """The folder of a concept's own images: given by the caller, else the one its pack records
    (or the checkout's `datasets/concepts/<folder name>`), if its images hash as recorded."""
    if concept["name"] in given:
        return Path(given[concept["name"]])
    from story.tasks.hashing import sha256_file
    from story.tasks.settings import REPO_ROOT

    pack = Path(concept.get("path") or "")
    meta_file = (pack if pack.is_absolute() else REPO_ROOT / pack) / "concept.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    recorded, images = meta.get("images_folder"), meta.get("images") or []
    if not recorded or not images:
        return None
    for folder in (REPO_ROOT / recorded, REPO_ROOT / "datasets" / "concepts" / Path(recorded).name):
        if folder.is_dir() and all(
            (folder / i["file"]).is_file() and sha256_file(folder / i["file"]) == i["sha256"]
            for i in images
        ):
            return folder
    return None


def story_consistency(
    render: str | Path,
    reader: JudgeReader,
    sheets: dict[str, Path] | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure a render's character and place consistency; write the report; return its summary.

    `sheets` maps a concept name to its images folder (default: the folder its pack records).
    """
    from story.tasks.concepts.images import read_concept_images
    from story.tasks.provenance.manifest import read_manifest
    from story.tasks.script.setting import find_place

    root = Path(render)
    manifest = read_manifest(root)
    clips = _read_plots(root, manifest)
    reading = reader.read(clips)
    plot_looks = looks(reading)
    plots = manifest["plots"]
    rows: dict[str, dict[str, Any]] = {}
    per_plot: list[dict[str, Any]] = []
    places = [find_place(p.get("prompt") or p.get("text") or "") for p in plots]
    for i, plot in enumerate(plots):
        named = world_ground(places[i])
        per_plot.append(
            {
                "plot": i + 1,
                "prompt": plot.get("prompt"),
                "concepts": plot.get("concepts") or [],
                "read": reading.row(i),
                "place": places[i],
                "named_ground": named,
                "ground_as_named": None
                if named is None
                else reading.labels["background"][i] == named,
            }
        )
    grids = []
    characters: dict[str, Any] = {}
    for concept in manifest.get("concepts") or []:
        name = concept["name"]
        naming = [i for i, p in enumerate(plots) if name in (p.get("concepts") or [])]
        if not naming:
            continue
        pair_sims = [float(plot_looks[a] @ plot_looks[b]) for a, b in combinations(naming, 2)]
        same = [
            all(reading.labels[k][a] == reading.labels[k][b] for k in LOOK)
            for a, b in combinations(naming, 2)
        ]
        entry: dict[str, Any] = {
            "plots": [i + 1 for i in naming],
            "between_plots_similarity": float(np.mean(pair_sims)) if pair_sims else None,
            "between_plots_same_look": float(np.mean(same)) if same else None,
        }
        folder = _sheet(concept, sheets or {})
        if folder is not None:
            size = clips[naming[0]].shape[1]
            frames = len(clips[naming[0]])
            images = read_concept_images(folder, size).images
            sheet_clips = [np.repeat(np.asarray(im)[None], frames, axis=0) for im in images]
            sheet_reading = reader.read(sheet_clips)
            centre = looks(sheet_reading).mean(axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            to_sheet = [float(plot_looks[i] @ centre) for i in naming]
            sheet_look = {k: max(set(v), key=v.count) for k, v in sheet_reading.labels.items()}
            entry.update(
                sheet=str(folder),
                sheet_read={k: sheet_look[k] for k in LOOK},
                plot_to_sheet_similarity=to_sheet,
                plots_read_as_sheet=float(
                    np.mean(
                        [all(reading.labels[k][i] == sheet_look[k] for k in LOOK) for i in naming]
                    )
                ),
            )
            grids.append(
                Grid(
                    f"<{name}>: its images (held still), then each plot naming it",
                    [(f"sheet image {n + 1}", [c]) for n, c in enumerate(sheet_clips[:3])]
                    + [(f"plot {i + 1}: {plots[i].get('prompt')}", [clips[i]]) for i in naming],
                )
            )
        characters[name] = entry
        for i in naming:
            row = rows.setdefault(f"plot {i + 1}", {})
            row[f"<{name}> look read"] = " / ".join(reading.labels[k][i] for k in LOOK)
            if "plot_to_sheet_similarity" in entry:
                row[f"<{name}> similarity to its images"] = round(
                    entry["plot_to_sheet_similarity"][naming.index(i)], 3
                )
    consecutive = []
    for i in range(1, len(plots)):
        same_place = places[i] is None or places[i] == places[i - 1]
        agree = reading.labels["background"][i] == reading.labels["background"][i - 1]
        consecutive.append(
            {"plots": [i, i + 1], "same_place_named": same_place, "ground_agrees": agree}
        )
    held = [c["ground_agrees"] for c in consecutive if c["same_place_named"]]
    ground_held = float(np.mean(held)) if held else None
    ground_as_named = _share([p["ground_as_named"] for p in per_plot])
    for item in per_plot:
        row = rows.setdefault(f"plot {item['plot']}", {})
        row["ground read"] = item["read"]["background"]
        row["ground named"] = item["named_ground"] or "-"
    summary = {
        "area": "consistency",
        "render_id": manifest.get("render_id"),
        "judge_id": reader.model_id,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "characters": characters,
        "plots": per_plot,
        "consecutive": consecutive,
        "ground_held": ground_held,
        "ground_as_named": ground_as_named,
    }
    columns = sorted({c for r in rows.values() for c in r})
    tables = [
        Table(
            f"Render {manifest.get('render_id')}: each plot as the judge reads it",
            columns,
            {label: {c: r.get(c, "-") for c in columns} for label, r in rows.items()},
            note="look = the main object's shape / colour / texture; similarity = cosine of the "
            "judge's look probabilities with the mean of the character's images",
        ),
        Table(
            "Across plots",
            ["value"],
            {
                **{
                    f"<{n}> similarity between plots": {
                        "value": _round(c["between_plots_similarity"])
                    }
                    for n, c in characters.items()
                },
                **{
                    f"<{n}> plots read with the same look": {
                        "value": _round(c["between_plots_same_look"])
                    }
                    for n, c in characters.items()
                },
                **{
                    f"<{n}> plots read with its images' look": {
                        "value": _round(c.get("plots_read_as_sheet"))
                    }
                    for n, c in characters.items()
                },
                "consecutive plots on one named place, ground agrees": {
                    "value": _round(ground_held)
                },
                "plots whose ground is the one named": {"value": _round(ground_as_named)},
            },
            note=f"{len(plots)} plots: descriptive shares of one render, no interval",
        ),
    ]
    folder = Path(out) if out is not None else root / FOLDER
    paths = write_report(
        folder, f"Consistency: render {manifest.get('render_id')}", summary, tables, grids
    )
    log(f"consistency: {len(plots)} plots, {len(characters)} character(s) -> {paths['html']}")
    return {**paths, **summary}


def _share(values: list[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _round(value: float | None) -> float | str:
    return "-" if value is None else round(float(value), 3)
