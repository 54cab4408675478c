"""Flows `reproduce_render` and `rerender`: a render again from its manifest alone.

`reproduce_render` re-renders with every cache bypassed and compares each plot's frames with
the hashes the manifest pinned. It refuses when a pinned model changed under its name: the
checkpoint, depth model or concept pack is resolved by name and checked against the manifest's
sha256, never opened from a path the manifest names. `rerender` renders the same story and clips
on another checkpoint and writes a side-by-side comparison page.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from story.flows.engine import flow
from story.flows.render_story import concept_folders, render_plan
from story.tasks.hashing import sha256_tree
from story.tasks.outputs.assemble import PlotRecord, read_mp4
from story.tasks.provenance.lineage import LineageRegistry, read_manifest
from story.tasks.render.render_plot import RenderError, checkpoint_sha256, resolve_checkpoint
from story.tasks.script.parse import Story
from story.tasks.settings import Settings


def find_render(ref: str, settings: Settings) -> Path:
    """A render folder from a render id (or unique prefix) in the registry."""
    renders = Path(settings.workspace) / "renders"
    if ref and "/" not in ref and (renders / ref / "manifest.json").is_file():
        return renders / ref
    rid = LineageRegistry(settings.workspace).resolve(ref)
    folder = renders / rid
    if not (folder / "manifest.json").is_file():
        raise RenderError(f"render {rid}: registered, but {folder} has no manifest.json")
    return folder


def _pins(manifest: dict[str, Any]) -> dict[int, list[str]]:
    pins: dict[int, list[str]] = {}
    for plot in sorted(manifest["inputs"]["plots"], key=lambda p: (p["index"], p["candidate"])):
        pins.setdefault(int(plot["index"]), []).append(plot["clip_id"])
    return pins


def check_pinned_models(manifest: dict[str, Any], settings: Settings) -> None:
    """Refuse when a checkpoint, depth model or concept pack differs from what was pinned."""
    from story.models.depth import resolve_depth_model_id

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
    story = Story.from_dict(manifest["story"]["script"])
    for name, folder_now in concept_folders(story, settings).items():
        expected = inputs["concepts"].get(name)
        actual = sha256_tree(folder_now) if Path(folder_now).exists() else None
        if expected != actual:
            raise RenderError(f"concept pack {name!r} at {folder_now} differs from the pinned one")


def _frame_hashes(manifest: dict[str, Any]) -> dict[int, list[str]]:
    return {int(p["index"]): list(p["frames_sha256"]) for p in manifest["plots"]}


@flow(name="reproduce_render")
def reproduce_render(
    render: str, settings: dict[str, Any] | None = None, use_ray: bool = False
) -> dict[str, Any]:
    """Re-render from the manifest with no cache and report whether every frame is identical."""
    resolved = Settings(**(settings or {}))
    folder = find_render(render, resolved)
    manifest = read_manifest(folder)
    check_pinned_models(manifest, resolved)
    inputs = manifest["inputs"]
    story = Story.from_dict(manifest["story"]["script"])
    scratch = Path(resolved.workspace) / "reproduce" / f"{manifest['render_id']}-{time.time_ns()}"
    t0 = time.perf_counter()
    try:
        summary = render_plan(
            story,
            resolved,
            scratch,
            seed=int(inputs["seed"]),
            checkpoint=inputs["checkpoint"]["name"],
            candidates=int(inputs["candidates"]),
            pins=_pins(manifest),
            params=dict(inputs["params"]),
            use_ray=use_ray,
            use_cache=False,
            register=False,
        )
        again = read_manifest(summary["manifest"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    expected, observed = _frame_hashes(manifest), _frame_hashes(again)
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
        "render_id": manifest["render_id"],
        "reproduced_id": again["render_id"],
        "identical": again["render_id"] == manifest["render_id"]
        and all(p["identical"] for p in plots),
        "plots": plots,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _records_from(folder: Path, manifest: dict[str, Any]) -> list[PlotRecord]:
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


@flow(name="rerender")
def rerender(
    render: str, checkpoint: str, settings: dict[str, Any] | None = None, use_ray: bool = True
) -> dict[str, Any]:
    """The same story, clips and seeds on another checkpoint, plus a comparison page."""
    from story.tasks.outputs.storyboard import write_comparison

    resolved = Settings(**(settings or {}))
    folder = find_render(render, resolved)
    manifest = read_manifest(folder)
    inputs = manifest["inputs"]
    story = Story.from_dict(manifest["story"]["script"])
    summary = render_plan(
        story,
        resolved,
        Path(resolved.workspace) / "renders",
        seed=int(inputs["seed"]),
        checkpoint=checkpoint,
        candidates=int(inputs["candidates"]),
        pins=_pins(manifest),
        params=dict(inputs["params"]),
        use_ray=use_ray,
    )
    new_folder = Path(summary["folder"])
    new_manifest = read_manifest(new_folder)
    page = write_comparison(
        new_folder / f"comparison_{manifest['render_id']}.html",
        story,
        [
            (
                f"{inputs['checkpoint']['name']} ({manifest['render_id']})",
                _records_from(folder, manifest),
            ),
            (f"{checkpoint} ({summary['render_id']})", _records_from(new_folder, new_manifest)),
        ],
    )
    return {**summary, "original": manifest["render_id"], "comparison": str(page)}
