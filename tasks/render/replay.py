"""A finished render again from its manifest alone: reproduced as is, or on another checkpoint.

Models are resolved by name and checked against the hashes the manifest pinned, never opened
from a path the manifest names. The story, seeds, parameters and clips come from the manifest.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from story.models.depth import resolve_depth_model_id
from story.models.pipeline import FORMER_DEFAULTS
from story.tasks.outputs.delivery import with_recorded_delivery
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.jobs import RenderError
from story.tasks.render.request import RenderRequest, concept_folders
from story.tasks.render.run import render_request
from story.tasks.script.story import Story
from story.tasks.settings import Settings
from story.tasks.workers import Executor


def find_render(ref: str, settings: Settings) -> Path:
    """A render folder from its path, or a render id (or unique prefix) in the registry.

    An id resolves to where the registry recorded the render's manifest (`--out`, shared
    storage), then to the workspace's renders folder.
    """
    if ref and (Path(ref) / "manifest.json").is_file():
        return Path(ref)
    renders = Path(settings.workspace) / "renders"
    if ref and "/" not in ref and (renders / ref / "manifest.json").is_file():
        return renders / ref
    registry = LineageRegistry(settings.workspace)
    rid = registry.resolve(ref)
    places = [*registry.manifest_files(rid), renders / rid / "manifest.json"]
    for manifest in places:
        if manifest.is_file():
            return manifest.parent
    looked = ", ".join(str(p.parent) for p in dict.fromkeys(places))
    raise RenderError(f"render {rid}: registered, but no manifest.json in {looked}")


def manifest_story(manifest: dict[str, Any]) -> Story:
    """The story a render was made from, as its manifest stored it."""
    return Story.from_dict(manifest["story"]["script"])


def manifest_pins(manifest: dict[str, Any]) -> dict[int, list[str]]:
    """Plot index -> the clip ids the render used, candidates in order."""
    pins: dict[int, list[str]] = {}
    for plot in sorted(manifest["inputs"]["plots"], key=lambda p: (p["index"], p["candidate"])):
        pins.setdefault(int(plot["index"]), []).append(plot["clip_id"])
    return pins


def replay_request(manifest: dict[str, Any], settings: Settings, checkpoint: str) -> RenderRequest:
    """The manifest's story, seed, candidates, parameters and clips, on `checkpoint`; a manifest
    planned before a default changed is replayed with the defaults it was rendered at."""
    inputs = manifest["inputs"]
    former = tuple(
        key for key in FORMER_DEFAULTS if any(key not in p["params"] for p in inputs["plots"])
    )
    return RenderRequest.resolve(
        manifest_story(manifest),
        settings,
        seed=int(inputs["seed"]),
        checkpoint=checkpoint,
        candidates=int(inputs["candidates"]),
        pins=manifest_pins(manifest),
        params=dict(inputs["params"]),
        former_defaults=former,
    )


def check_pinned_models(manifest: dict[str, Any], settings: Settings) -> None:
    """Refuse when a checkpoint, depth model or concept pack differs from what was pinned."""
    inputs = manifest["inputs"]
    pinned = inputs["checkpoint"]
    folder = resolve_checkpoint(pinned["name"], settings.checkpoints)
    now = checkpoint_sha256(folder)
    if now != pinned["sha256"]:
        raise RenderError(
            f"checkpoint {pinned['name']!r} at {folder} changed: the render pinned sha256 "
            f"{pinned['sha256'][:16]}..., the folder now hashes to {now[:16]}...; "
            "restore the pinned weights (dvc checkout) to reproduce"
        )
    depth_now = resolve_depth_model_id(settings.depth_model, settings.checkpoints)
    if depth_now != inputs["depth_model"]:
        raise RenderError(
            f"depth model changed: the render pinned {inputs['depth_model']}, now {depth_now}"
        )
    story = manifest_story(manifest)
    for name, folder_now in concept_folders(story, settings, pinned["name"]).items():
        expected = inputs["concepts"].get(name)
        actual = checkpoint_sha256(folder_now) if Path(folder_now).exists() else None
        if expected != actual:
            raise RenderError(f"concept pack {name!r} at {folder_now} differs from the pinned one")


def _frame_hashes(manifest: dict[str, Any]) -> dict[int, list[str]]:
    return {int(p["index"]): list(p["frames_sha256"]) for p in manifest["plots"]}


def compare_frames(original: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """Per plot: are the frames of `again` those `original` pinned; and overall."""
    expected, observed = _frame_hashes(original), _frame_hashes(again)
    plots = [
        {
            "index": index,
            "identical": expected[index] == observed.get(index),
            "expected": expected[index],
            "observed": observed.get(index),
        }
        for index in sorted(expected)
    ]
    return {
        "render_id": original["render_id"],
        "reproduced_id": again["render_id"],
        "identical": again["render_id"] == original["render_id"]
        and all(p["identical"] for p in plots),
        "plots": plots,
    }


def reproduce(ref: str, settings: Settings, executor: Executor) -> dict[str, Any]:
    """Re-render from the manifest with no cache into a scratch folder; compare every frame."""
    manifest = read_manifest(find_render(ref, settings))
    settings = with_recorded_delivery(settings, manifest)
    check_pinned_models(manifest, settings)
    scratch = Path(settings.workspace) / "reproduce" / f"{manifest['render_id']}-{time.time_ns()}"
    t0 = time.perf_counter()
    try:
        request = replay_request(manifest, settings, manifest["inputs"]["checkpoint"]["name"])
        summary = render_request(
            request, settings, scratch, executor, use_cache=False, register=False
        )
        again = read_manifest(summary["manifest"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**compare_frames(manifest, again), "seconds": round(time.perf_counter() - t0, 3)}


def records_from(folder: Path, manifest: dict[str, Any]) -> list[PlotRecord]:
    """Plot records rebuilt from a finished render's own files, for comparison pages."""
    return [
        PlotRecord(
            index=int(p["index"]),
            text=p["text"],
            query=p["query"],
            prompt=p["prompt"],
            clip_id=p["clip_id"],
            clip_uri=p["clip_uri"],
            clip_caption=p["clip_caption"],
            retrieved_frames=None,
            structure=None,
            generated=read_mp4(folder / p["video"]),
            video_path=folder / p["video"],
            params=p.get("params", {}),
        )
        for p in manifest["plots"]
    ]


def rerender_on(
    ref: str, checkpoint: str, settings: Settings, executor: Executor
) -> dict[str, Any]:
    """The same story, clips and seeds on another checkpoint, plus a comparison page."""
    from story.tasks.outputs.storyboard import write_comparison

    folder = find_render(ref, settings)
    manifest = read_manifest(folder)
    settings = with_recorded_delivery(settings, manifest)
    request = replay_request(manifest, settings, checkpoint)
    summary = render_request(request, settings, Path(settings.workspace) / "renders", executor)
    new_folder = Path(summary["folder"])
    page = write_comparison(
        new_folder / f"comparison_{manifest['render_id']}.html",
        request.story,
        [
            (
                f"{manifest['inputs']['checkpoint']['name']} ({manifest['render_id']})",
                records_from(folder, manifest),
            ),
            (
                f"{checkpoint} ({summary['render_id']})",
                records_from(new_folder, read_manifest(new_folder)),
            ),
        ],
    )
    return {**summary, "original": manifest["render_id"], "comparison": str(page)}
