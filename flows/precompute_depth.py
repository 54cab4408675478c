"""Flow `precompute_depth` / `story depth`: structure maps for the clip library, computed once.

Clips come from the whole library or a query's top-k. Keys already in the store are skipped
before anything is dispatched; the rest go in batches to `DepthBatchWorker`s on the executor (Ray
actors, or in-process), each loading its model once. Maps are stored at the synthesis
checkpoint's frame size unless a size is given, so renders find them. A clip that cannot be
decoded is reported with its reason while the others complete.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.logs import run_logger
from story.flows.parameters import SettingsParam, as_settings
from story.flows.progress import Progress
from story.tasks.errors import StoryError
from story.tasks.library.index import ClipIndex
from story.tasks.progress import ProgressCallback, no_progress
from story.tasks.render.checkpoints import checkpoint_geometry, resolve_checkpoint
from story.tasks.settings import Settings
from story.tasks.structure.depth_batch_worker import DepthBatchWorker
from story.tasks.structure.depth_step import DepthJob, failure_detail, failure_reason
from story.tasks.structure.depth_store import DepthStore, make_key
from story.tasks.structure.maps import resolve_structure_model_id
from story.tasks.workers import Executor, WorkerSpec

CLIP_COLUMNS = ["clip_id", "uri", "frame_indices"]
BATCH_CLIPS = 8  # several workers: small batches share the clips out evenly
SOLE_WORKER_BATCH_CLIPS = 64  # one worker: large batches keep its decode/write pipeline full


@task(name="select-clips", cache_policy=NO_CACHE)
def select_clips(settings: Settings, query: str | None, top_k: int | None) -> list[DepthJob]:
    """Every clip of the library, or the top-k clips for a text query."""
    index = ClipIndex(settings.lancedb, settings.clips_table)
    if index.count() == 0:
        raise StoryError(f"{settings.lancedb}: the clip library is empty; run `story index` first")
    rows: list[dict[str, Any] | None]
    if query is None:
        table = index.table.search().select(CLIP_COLUMNS).limit(None).to_arrow()
        rows = [{**r, "uri": index.media_uri(r["uri"])} for r in table.to_pylist()]
    else:
        from story.models.text_encoder import load_text_encoder
        from story.tasks.library.search import search

        encoder = load_text_encoder("minilm", device=settings.device)
        hits = search(index, encoder, query, k=top_k or 5)
        rows = [index.get(hit.clip_id) for hit in hits]
    return [
        DepthJob(str(r["clip_id"]), str(r["uri"]), tuple(int(i) for i in r["frame_indices"]))
        for r in rows
        if r is not None
    ]


def batches(jobs: list[DepthJob], workers: int) -> list[list[DepthJob]]:
    """The clips cut into batches for `workers` workers."""
    cap = SOLE_WORKER_BATCH_CLIPS if workers == 1 else BATCH_CLIPS
    size = max(1, min(cap, -(-len(jobs) // workers)))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def synthesis_size(settings: Settings, checkpoint: str | None = None) -> tuple[int, int]:
    """The frame size the synthesis checkpoint (default: the settings' one) renders at: what
    renders look structure up at."""
    name = checkpoint or settings.checkpoint
    return checkpoint_geometry(resolve_checkpoint(name, settings.checkpoints)).size


def run_jobs(
    settings: Settings,
    jobs: list[DepthJob],
    model: str,
    size: tuple[int, int] | None,
    normalize: str,
    executor: Executor,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Skip stored keys, fan the rest out (reporting clips done), and total what happened."""
    log = run_logger(__name__)
    t0 = time.perf_counter()
    model_id = resolve_structure_model_id(model, settings.checkpoints)
    store = DepthStore.from_settings(settings)
    keys = [make_key(j.clip_id, model_id, j.frame_indices, size, normalize).digest for j in jobs]
    missing = set(store.missing(keys))
    todo = [job for job, key in zip(jobs, keys, strict=True) if key in missing]
    cached = len(jobs) - len(todo)
    log.info("%d clips: %d cached, %d to compute with %s", len(jobs), cached, len(todo), model_id)
    summary: dict[str, Any] = {"computed": 0, "cached": cached, "failed": [], "frames": 0}
    timings = {"read_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
    spec = WorkerSpec(
        DepthBatchWorker,
        {
            "settings": settings.resolved(),
            "model": model,
            "size": size,
            "normalize": normalize,
            "threads": executor.threads_per_worker,
        },
    )
    done = cached
    progress(done, len(jobs))
    for batch, results, error in executor.map(spec, batches(todo, executor.workers)):
        done += len(batch)
        progress(done, len(jobs))
        if error is not None:
            log.error("batch of %d clips failed: %s", len(batch), error)
            failed = {"reason": failure_reason(error), "detail": failure_detail(error)}
            summary["failed"] += [{"clip_id": j.clip_id, **failed} for j in batch]
            continue
        for result in results or []:
            if result.status == "failed":
                log.warning("clip %s failed: %s", result.clip_id, result.reason)
                summary["failed"].append(
                    {"clip_id": result.clip_id, "reason": result.reason, "detail": result.detail}
                )
                continue
            summary["computed" if result.status == "computed" else "cached"] += 1
            summary["frames"] += result.frames
            timings["read_s"] += result.read_s
            timings["compute_s"] += result.compute_s
            timings["write_s"] += result.write_s
    timings["wall_s"] = time.perf_counter() - t0
    summary.update(
        {
            "clips": len(jobs),
            "model_id": model_id,
            "size": None if size is None else list(size),
            "normalize": normalize,
            "store": str(store.root),
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
    )
    return summary


def publish_artifacts(summary: dict[str, Any]) -> None:
    """Counts, failures and where the time went, as Prefect artifacts."""
    create_table_artifact(
        key="precompute-depth-counts",
        table=[
            {"metric": "clips", "value": summary["clips"]},
            {"metric": "computed", "value": summary["computed"]},
            {"metric": "cached", "value": summary["cached"]},
            {"metric": "failed", "value": len(summary["failed"])},
            {"metric": "frames computed", "value": summary["frames"]},
            {"metric": "model id", "value": summary["model_id"]},
        ],
        description="Structure precompute: counts",
    )
    create_table_artifact(
        key="precompute-depth-timings",
        table=[{"stage": k, "seconds": v} for k, v in summary["timings"].items()],
        description="Time spent reading (decoding), computing and writing; wall time overall",
    )
    lines = ["| clip_id | reason | detail |", "|---|---|---|"]
    lines += [
        f"| {f['clip_id']} | {f['reason']} | {str(f.get('detail', '')).replace('|', '/')[:200]} |"
        for f in summary["failed"]
    ]
    create_markdown_artifact(
        key="precompute-depth-failures",
        markdown="# Failed clips\n\n" + ("\n".join(lines) if summary["failed"] else "None."),
        description="Clips whose structure could not be computed, with the reason",
    )


@flow(name="precompute_depth")
def precompute_depth(
    settings: SettingsParam = None,
    query: str | None = None,
    top_k: int | None = None,
    model: str = "tiny",
    workers: int | None = None,
    use_ray: bool = True,
    size: tuple[int, int] | None = None,
    normalize: str = "frame",
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Structure maps for the library (or a query's top-k): computed once per key, then cached.

    `size` (height, width) defaults to the frame size of the synthesis `checkpoint`.
    """
    resolved = as_settings(settings)
    if normalize not in ("frame", "clip"):
        raise StoryError(f"normalize must be 'frame' or 'clip', got {normalize!r}")
    size = (int(size[0]), int(size[1])) if size else synthesis_size(resolved, checkpoint)
    jobs = select_clips(resolved, query, top_k)
    executor = executor_for(resolved, use_ray, workers=workers)
    with Progress("depth: clips", key="precompute-depth-progress") as progress:
        summary = run_jobs(resolved, jobs, model, size, normalize, executor, progress)
    summary["query"] = query
    publish_artifacts(summary)
    return summary
