"""Flow `render_story`: story script -> retrieval -> structure -> synthesis -> assembled render.

Plots fan out to `PlotRenderer` actors on Ray (or run in-process). The render is written into a
hidden partial folder and renamed to `renders/<render_id>/` only when its manifest is complete,
so a failed or interrupted render never looks finished. An unchanged story maps to the same
render id and is returned as is; changed stories still reuse stored depth and cached shots.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.flows.ray_pool import ensure_ray, run_local, run_on_actors
from story.settings import Settings
from story.tasks.assemble import PlotRecord, write_outputs
from story.tasks.hashing import render_id as make_render_id
from story.tasks.lineage import (
    LineageRegistry,
    build_manifest,
    describe_asset,
    environment_info,
    read_manifest,
    write_manifest,
)
from story.tasks.media import sample_indices
from story.tasks.render_plot import (
    PlotJob,
    PlotRenderer,
    PlotResult,
    RenderError,
    checkpoint_config,
    checkpoint_sha256,
    resolve_checkpoint,
)
from story.tasks.script import Plot, Story, effective_seed, load_story

DEFAULTS = {"steps": 25, "guidance": 4.0, "tau": 0, "strength": 1.0}


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run, log normally
        return logging.getLogger(__name__)


def retrieve(
    story: Story, settings: Settings, candidates: int, pins: dict[int, list[str]]
) -> tuple[dict[int, list[dict[str, Any]]], int]:
    """Each plot's clip(s): pinned clip ids, or the top `candidates` hits of its query."""
    from story.models.text_encoder import load_text_encoder
    from story.tasks.index import ClipIndex
    from story.tasks.search import search

    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    if not index.exists or index.count() == 0:
        raise RenderError(f"{settings.lancedb}: the clip library is empty; run `story index`")
    encoder = None
    chosen: dict[int, list[dict[str, Any]]] = {}
    for plot in story.plots:
        pinned = pins.get(plot.index) or ([plot.clip_id] if plot.clip_id else [])
        if pinned:
            rows = [index.get(clip_id) for clip_id in pinned]
            missing = [c for c, row in zip(pinned, rows, strict=True) if row is None]
            if missing:
                raise RenderError(
                    f"{story.source}:{plot.line}: plot {plot.index} pins clip {missing[0]!r}, "
                    f"which is not in the library"
                )
            chosen[plot.index] = rows
            continue
        encoder = encoder or load_text_encoder("minilm", device=settings.device)
        hits = search(index, encoder, plot.query, k=candidates)
        if not hits:
            raise RenderError(
                f"{story.source}:{plot.line}: no clip matches the query {plot.query!r}"
            )
        chosen[plot.index] = [index.get(h.clip_id) for h in hits]
    return chosen, index.version()


def plot_frames(plot: Plot, model_frames: int) -> int:
    return plot.frames or model_frames


def frame_indices(clip: dict[str, Any], count: int, stride: int) -> tuple[int, ...]:
    """`count` frames of the clip at the library's stride, spread evenly when it is shorter."""
    fps = float(clip["fps"])
    first = round(float(clip["start"]) * fps)
    last = max(first + 1, round(float(clip["end"]) * fps))
    return tuple(sample_indices(first, last, count, stride))


def _clip_fields(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("clip_id", "uri", "start", "end", "fps", "source_hash", "caption", "source", "license")
    return {k: row.get(k) for k in keys}


def concept_folders(story: Story, settings: Settings) -> dict[str, str]:
    """Concept name -> its pack folder under the checkpoints root."""
    from story.tasks.script import resolve_within

    return {
        name: str(resolve_within(Path(settings.checkpoints), ref))
        for name, ref in story.characters.items()
    }


def plan(
    story: Story,
    settings: Settings,
    seed: int,
    checkpoint: str,
    candidates: int,
    pins: dict[int, list[str]],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Everything the render depends on: retrieval, frame sampling, seeds, params, hashes."""
    from story.models.depth import resolve_depth_model_id

    t0 = time.perf_counter()
    folder = resolve_checkpoint(checkpoint, settings.checkpoints)
    ckpt_sha = checkpoint_sha256(folder)
    model_frames = int(checkpoint_config(folder)["frames"])
    chosen, table_version = retrieve(story, settings, candidates, pins)
    concepts = concept_folders(story, settings)
    jobs = []
    for plot in story.plots:
        plot_params = {**DEFAULTS, **params}
        if plot.tau is not None:
            plot_params["tau"] = int(plot.tau)
        used = {n: concepts[n] for n in plot.characters if n in concepts}
        for candidate, row in enumerate(chosen[plot.index]):
            jobs.append(
                PlotJob(
                    index=plot.index,
                    candidate=candidate,
                    prompt=plot.prompt,
                    clip=_clip_fields(row),
                    frame_indices=frame_indices(
                        row, plot_frames(plot, model_frames), settings.stride
                    ),
                    seed=effective_seed(plot, seed),
                    structure=plot.structure,
                    params=plot_params,
                    concepts=used,
                )
            )
    concept_assets = [describe_asset(n, p, key="path") for n, p in concepts.items()]
    inputs = {
        "story": story.content_hash(),
        "seed": seed,
        "candidates": candidates,
        "params": params,
        "checkpoint": {"name": checkpoint, "sha256": ckpt_sha},
        "depth_model": resolve_depth_model_id(settings.depth_model, settings.checkpoints),
        "concepts": {a["name"]: a["sha256"] for a in concept_assets},
        "plots": [
            {
                "index": j.index,
                "candidate": j.candidate,
                "prompt": j.prompt,
                "clip_id": j.clip["clip_id"],
                "clip_source_sha256": j.clip["source_hash"],
                "frame_indices": list(j.frame_indices),
                "seed": j.seed,
                "structure": j.structure,
                "params": j.params,
            }
            for j in jobs
        ],
    }
    return {
        "jobs": jobs,
        "inputs": inputs,
        "checkpoint_folder": folder,
        "checkpoint_sha256": ckpt_sha,
        "concept_assets": concept_assets,
        "table_version": table_version,
        "retrieve_s": time.perf_counter() - t0,
    }


def run_plots(
    settings: Settings,
    checkpoint: str,
    jobs: list[PlotJob],
    use_ray: bool,
    use_cache: bool = True,
) -> list[PlotResult]:
    """Render every job; any failure fails the render, naming the plot."""
    init = {"settings": settings.resolved(), "checkpoint": checkpoint, "use_cache": use_cache}
    if use_ray:
        ensure_ray(settings)
        outcomes = run_on_actors(
            PlotRenderer, init, jobs, "process", workers=min(settings.ray_workers, len(jobs))
        )
    else:
        outcomes = run_local(PlotRenderer, init, jobs, "process")
    results = []
    for job, result, error in outcomes:
        if error is not None:
            raise RenderError(f"plot {job.index} (candidate {job.candidate}): {error}") from error
        results.append(result)
    return sorted(results, key=lambda r: (r.index, r.candidate))


def _records(story: Story, jobs: list[PlotJob], results: list[PlotResult]) -> list[PlotRecord]:
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
                clip_uri=job.clip["uri"],
                clip_caption=job.clip["caption"],
                retrieved_frames=first.retrieved,
                structure=first.structure,
                generated=generated[0] if len(generated) == 1 else generated,
                params={**job.params, "seed": job.seed, "structure": job.structure},
            )
        )
    return records


def _plot_entries(
    out: Path, records: list[PlotRecord], jobs: list[PlotJob], results: list[PlotResult]
) -> list[dict[str, Any]]:
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
                "candidates": [
                    {"clip_id": j.clip["clip_id"], "shot_key": r.shot_key, "cached": r.cached}
                    for j, r in pairs
                ],
                "concepts": sorted(job.concepts),
            }
        )
    return entries


def _publish(summary: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    create_table_artifact(
        key="render-story-plots",
        table=[
            {
                "plot": e["index"],
                "query": e["query"],
                "prompt": e["prompt"],
                "clip": e["clip_id"],
                "cached": all(c["cached"] for c in e["candidates"]),
            }
            for e in entries
        ],
        description=f"Render {summary['render_id']}: one row per plot",
    )
    create_table_artifact(
        key="render-story-timings",
        table=[{"stage": k, "seconds": round(v, 3)} for k, v in summary["timings"].items()],
        description="Time spent retrieving, computing structure, synthesising and assembling",
    )
    create_markdown_artifact(
        key="render-story-outputs",
        markdown="\n".join(f"- **{k}**: `{v}`" for k, v in summary.items() if k != "timings"),
        description="Where the render's files are",
    )


def _summary(folder: Path, manifest: dict[str, Any], reused: bool) -> dict[str, Any]:
    outputs = manifest["outputs"]
    return {
        "render_id": manifest["render_id"],
        "folder": str(folder),
        "video": str(folder / outputs["video"]),
        "storyboard": str(folder / outputs["storyboard"]),
        "timeline": str(folder / outputs["timeline"]),
        "manifest": str(folder / "manifest.json"),
        "plots": len(manifest["plots"]),
        "reused": reused,
        "timings": manifest.get("timings", {}),
    }


def ensure_writable(folder: Path) -> None:
    """Fail before any synthesis when the renders folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RenderError(f"{folder}: cannot write renders here: {exc.strerror or exc}") from exc


def render_plan(
    story: Story,
    settings: Settings,
    out_root: Path,
    *,
    seed: int,
    checkpoint: str,
    candidates: int,
    pins: dict[int, list[str]],
    params: dict[str, Any],
    use_ray: bool,
    use_cache: bool = True,
    register: bool = True,
) -> dict[str, Any]:
    """Plan, render and assemble one story into `<out_root>/<render_id>/`."""
    log = _logger()
    planned = plan(story, settings, seed, checkpoint, candidates, pins, params)
    rid = make_render_id(planned["inputs"])
    final = out_root / rid
    if use_cache and (final / "manifest.json").is_file():
        manifest = read_manifest(final)
        if manifest.get("status") == "complete":
            log.info("render %s is up to date: reusing it", rid)
            return _summary(final, manifest, reused=True)

    ensure_writable(out_root)
    t0 = time.perf_counter()
    results = run_plots(settings, checkpoint, planned["jobs"], use_ray, use_cache)
    synth_s = time.perf_counter() - t0
    partial = out_root / f".{rid}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        records = _records(story, planned["jobs"], results)
        outputs = write_outputs(partial, story, records, fps=settings.fps, render_id=rid)
        entries = _plot_entries(partial, records, planned["jobs"], results)
        assemble_s = time.perf_counter() - t0
        timings = {
            "retrieve_s": planned["retrieve_s"],
            "structure_s": sum(r.timings["structure_s"] for r in results),
            "synthesis_s": sum(r.timings["synthesis_s"] for r in results),
            "plots_wall_s": synth_s,
            "assemble_s": assemble_s,
        }
        manifest = build_manifest(
            inputs=planned["inputs"],
            story=story,
            plots=entries,
            outputs=outputs,
            checkpoints=[
                {
                    **describe_asset(checkpoint, planned["checkpoint_folder"]),
                    "name": checkpoint,
                    "sha256": planned["checkpoint_sha256"],
                }
            ],
            concepts=planned["concept_assets"],
            library={
                "uri": settings.lancedb,
                "table": settings.clips_table,
                "version": planned["table_version"],
            },
            settings=settings.resolved(),
            environment=environment_info(),
            timings=timings,
        )
        write_manifest(partial, manifest)
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if register:
        LineageRegistry(settings.workspace).add_render(manifest, final / "manifest.json")
    return _summary(final, manifest, reused=False)


@flow(name="render_story")
def render_story(
    story: str,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
    seed: int = 0,
    checkpoint: str = "tiny",
    candidates: int = 1,
    params: dict[str, Any] | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """Render a story script into `renders/<render_id>/` and register its lineage."""
    resolved = Settings(**(settings or {}))
    if candidates < 1:
        raise RenderError(f"candidates must be >= 1, got {candidates}")
    script = load_story(story, max_frames=resolved.max_plot_frames)
    out_root = Path(out) if out else Path(resolved.workspace) / "renders"
    summary = render_plan(
        script,
        resolved,
        out_root,
        seed=seed,
        checkpoint=checkpoint,
        candidates=candidates,
        pins={},
        params=params or {},
        use_ray=use_ray,
    )
    manifest = read_manifest(summary["manifest"])
    _publish(summary, manifest["plots"])
    return summary


@flow(name="render_shot")
def render_shot(
    query: str,
    prompt: str,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
    seed: int = 0,
    tau: int | None = None,
    frames: int | None = None,
    checkpoint: str = "tiny",
    params: dict[str, Any] | None = None,
    use_ray: bool = False,
) -> dict[str, Any]:
    """One plot end to end: retrieve -> depth -> synthesize -> mp4 + manifest."""
    resolved = Settings(**(settings or {}))
    if not query.strip() or not prompt.strip():
        raise RenderError("a shot needs a non-empty query and prompt")
    plot = Plot(
        index=0, text=prompt, query=query, prompt=prompt, frames=frames, seed=seed, tau=tau, line=0
    )
    story = Story(title=prompt, characters={}, plots=(plot,), source="<shot>", fmt="yaml")
    out_root = Path(out) if out else Path(resolved.workspace) / "renders"
    summary = render_plan(
        story,
        resolved,
        out_root,
        seed=seed,
        checkpoint=checkpoint,
        candidates=1,
        pins={},
        params=params or {},
        use_ray=use_ray,
    )
    manifest = read_manifest(summary["manifest"])
    plot_entry = manifest["plots"][0]
    return {
        **summary,
        "video": str(Path(summary["folder"]) / plot_entry["video"]),
        "clip_id": plot_entry["clip_id"],
        "clip_uri": plot_entry["clip_uri"],
    }
