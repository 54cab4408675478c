"""Committing a render: outputs and manifest built in a hidden folder, renamed when complete.

A failed or interrupted render never looks finished: `renders/<render_id>/` appears only once
its manifest is written, and a render folder that cannot be written is refused before any
synthesis (`ensure_writable`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from story.tasks.atomic import atomic_folder
from story.tasks.library.canonical import export_digest, is_export
from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.provenance.environment import environment_info
from story.tasks.provenance.manifest import build_manifest, describe_asset, write_manifest
from story.tasks.render.jobs import PlotJob, PlotResult, RenderError
from story.tasks.render.planning import RenderPlan
from story.tasks.reproducible import recorded_path, reproducible_build
from story.tasks.script.story import Story
from story.tasks.settings import Settings


def ensure_writable(folder: Path) -> None:
    """Fail before any synthesis when the renders folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RenderError(f"{folder}: cannot write renders here: {exc.strerror or exc}") from exc


def plot_records(story: Story, jobs: list[PlotJob], results: list[PlotResult]) -> list[PlotRecord]:
    """One record per plot for the outputs; candidates of a plot go side by side."""
    by_plot: dict[int, list[tuple[PlotJob, PlotResult]]] = {}
    job_of = {(j.index, j.candidate): j for j in jobs}
    for r in results:
        by_plot.setdefault(r.index, []).append((job_of[(r.index, r.candidate)], r))
    records = []
    for plot in story.plots:
        pairs = by_plot[plot.index]
        job, first = pairs[0]
        generated = [r.generated for _, r in pairs]
        records.append(
            PlotRecord(
                index=plot.index,
                text=plot.text,
                query=plot.query,
                prompt=plot.prompt,
                clip_id=job.clip["clip_id"],
                clip_uri=recorded_path(job.clip["uri"]),
                clip_caption=job.clip["caption"],
                retrieved_frames=first.retrieved,
                structure=first.structure,
                generated=generated[0] if len(generated) == 1 else generated,
                params={**job.params, "seed": job.seed, "structure": job.structure},
            )
        )
    return records


def plot_entries(
    out: Path, records: list[PlotRecord], jobs: list[PlotJob], results: list[PlotResult]
) -> list[dict[str, Any]]:
    """The manifest's plot entries: outputs, frame hashes, clip, depth key and candidates."""
    entries = []
    for record in records:
        pairs = [(j, r) for j, r in zip(jobs, results, strict=True) if j.index == record.index]
        job, result = pairs[0]
        entries.append(
            {
                **record.manifest_entry(out),
                "seed": job.seed,
                "clip_source_sha256": job.clip["source_hash"],
                "clip_start": job.clip["start"],
                "clip_end": job.clip["end"],
                "frame_indices": list(job.frame_indices),
                "structure": job.structure,
                "depth_key": result.structure_key,
                "candidates": [candidate_entry(j, r) for j, r in pairs],
                "concepts": sorted(job.concepts),
            }
        )
    return entries


def commit_render(
    plan: RenderPlan,
    results: list[PlotResult],
    settings: Settings,
    out_root: Path,
    plots_wall_s: float,
) -> tuple[Path, dict[str, Any]]:
    """Write outputs and manifest of a rendered plan into `<out_root>/<render_id>/`."""
    request, rid = plan.request, plan.render_id
    final = out_root / rid
    with atomic_folder(final) as partial:
        t0 = time.perf_counter()
        records = plot_records(request.story, plan.jobs, results)
        delivery = Delivery.from_settings(settings)
        outputs = write_outputs(
            partial, request.story, records, settings.fps, render_id=rid, delivery=delivery
        )
        entries = plot_entries(partial, records, plan.jobs, results)
        timings = {
            "retrieve_s": plan.retrieve_s,
            "structure_s": sum(r.timings["structure_s"] for r in results),
            "synthesis_s": sum(r.timings["synthesis_s"] for r in results),
            "plots_wall_s": plots_wall_s,
            "assemble_s": time.perf_counter() - t0,
        }
        manifest = build_manifest(
            inputs=plan.inputs,
            story=request.story,
            plots=entries,
            outputs=outputs,
            checkpoints=[
                describe_asset(
                    request.checkpoint,
                    request.checkpoint_folder,
                    sha256=request.checkpoint_sha256,
                )
            ],
            concepts=plan.concept_assets,
            library=library_record(settings, plan.table_version),
            settings=settings.recorded(),
            environment=environment_info(),
            timings=timings,
        )
        write_manifest(partial, manifest)
    return final, manifest


def library_record(settings: Settings, version: int | None) -> dict[str, Any]:
    """The library the render read: its URI as given, table and version; an export's sha256."""
    record: dict[str, Any] = {
        "uri": settings.library_uri,
        "table": settings.clips_table,
        "version": version,
    }
    if is_export(settings.library_uri):
        record["export_sha256"] = export_digest(settings.library_uri)
    return record


def candidate_entry(job: PlotJob, result: PlotResult) -> dict[str, Any]:
    """A rendered candidate: its clip and shot key, and whether the shot came from the cache
    (left out of a reproducible build: it depends on what ran before, not on the inputs)."""
    entry: dict[str, Any] = {"clip_id": job.clip["clip_id"], "shot_key": result.shot_key}
    if not reproducible_build():
        entry["cached"] = result.cached
    return entry
