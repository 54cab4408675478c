"""A render from request to committed folder, on whatever executor the caller chose.

An up-to-date request (or a plan whose render id already has a complete folder) is answered
without rendering; anything else plans, renders every plot through the executor, commits the
render, registers its lineage and remembers the request. Flows call this with their executor;
it never knows whether plots run in-process or on Ray actors.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

from story.tasks.progress import ProgressCallback, no_progress
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.commit import commit_render, ensure_writable
from story.tasks.render.jobs import PlotResult, RenderError
from story.tasks.render.planning import RenderPlan, plan_render
from story.tasks.render.render_plot import PlotRenderer
from story.tasks.render.request import RenderRequest
from story.tasks.render.request_records import RequestRecords
from story.tasks.settings import Settings
from story.tasks.workers import Executor, WorkerSpec

log = logging.getLogger(__name__)


def render_summary(folder: Path, manifest: dict[str, Any], reused: bool) -> dict[str, Any]:
    """What a render call returns: the render id and where its files are."""
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


def find_up_to_date(
    request: RenderRequest, settings: Settings, out_root: Path
) -> dict[str, Any] | None:
    """The summary of the complete render an identical earlier request produced, if any."""
    found = RequestRecords(settings.workspace).find(out_root, request)
    return None if found is None else render_summary(*found, reused=True)


def render_plots(
    plan: RenderPlan,
    settings: Settings,
    executor: Executor,
    use_cache: bool = True,
    progress: ProgressCallback = no_progress,
) -> list[PlotResult]:
    """Render every job of the plan (reporting plots done); any failure fails the render,
    naming the plot."""
    spec = WorkerSpec(
        PlotRenderer,
        {"settings": settings, "checkpoint": plan.request.checkpoint, "use_cache": use_cache},
        identity=plan.worker_identity,
    )
    results = []
    progress(0, len(plan.jobs))
    for job, result, error in executor.map(spec, plan.jobs):
        if error is not None:
            raise RenderError(f"plot {job.index} (candidate {job.candidate}): {error}") from error
        results.append(cast(PlotResult, result))
        progress(len(results), len(plan.jobs))
    return sorted(results, key=lambda r: (r.index, r.candidate))


def render_request(
    request: RenderRequest,
    settings: Settings,
    out_root: Path,
    executor: Executor,
    *,
    use_cache: bool = True,
    register: bool = True,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Plan, render and commit one request into `<out_root>/<render_id>/`; its summary.

    `use_cache=False` (reproduction) neither answers from an earlier render nor reads stored
    depth or shots.
    """
    records = RequestRecords(settings.workspace)
    if use_cache and (found := find_up_to_date(request, settings, out_root)) is not None:
        log.info("render %s is up to date (same request): reusing it", found["render_id"])
        return found
    plan = plan_render(request, settings)
    rid = plan.render_id
    final = out_root / rid
    remember = use_cache and plan.table_version == request.library_version
    if use_cache and (final / "manifest.json").is_file():
        manifest = read_manifest(final)
        if manifest.get("status") == "complete":
            log.info("render %s is up to date: reusing it", rid)
            if remember:
                records.remember(out_root, request, rid)
            return render_summary(final, manifest, reused=True)

    ensure_writable(out_root)
    t0 = time.perf_counter()
    results = render_plots(plan, settings, executor, use_cache, progress)
    final, manifest = commit_render(plan, results, settings, out_root, time.perf_counter() - t0)
    if register:
        LineageRegistry(settings.workspace).add_render(manifest, final / "manifest.json")
    if remember:
        records.remember(out_root, request, rid)
    return render_summary(final, manifest, reused=False)
