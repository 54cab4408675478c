"""Crashes: `kill -9` of a real `story index` mid-run, a Ray actor dying mid-batch, and writers of
the lineage registry killed while others append. Nothing may be lost or stored twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import numpy as np
import pytest

from story.flows.build_index import build_index
from story.flows.executors import RayExecutor
from story.tasks.library.index import ClipIndex
from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.provenance.lineage import LineageRegistry, manifest_assets
from story.tasks.provenance.manifest import LineageError, read_manifest, write_manifest
from story.tasks.script.parse import load_story
from story.tasks.settings import Settings
from story.tasks.workers import WorkerSpec
from tests.faults.conftest import STORIES, DiesOnce, Recorder, child_env
from tests.faults.lineage_writer import register_renders, render_manifest
from tests.flows.library_fixture import write_clip

SHARD_SIZE = 4
LEDGER = "ingest_shards"


def write_clips(root: Path, count: int) -> Path:
    """`count` distinct tiny miniature-world clips and a JSONL manifest naming them."""
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        caption, _ = write_clip(media / f"clip_{i:03d}.mp4", 5000 + i)
        rows.append({"uri": f"media/clip_{i:03d}.mp4", "caption": caption, "source": "faults"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def index_command(manifest: Path, workspace: Path) -> list[str]:
    """The `story index` command line, in-process Ray-free, one JSON document on stdout."""
    return [
        sys.executable,
        "-m",
        "story.flows.cli",
        "index",
        str(manifest),
        "--workspace",
        str(workspace),
        "--shard-size",
        str(SHARD_SIZE),
        "--no-ray",
        "--json",
    ]


def finished_shards(workspace: Path) -> int:
    """Rows in the shard ledger of a workspace another process may be writing (0 before it)."""
    db = lancedb.connect(str(workspace / "lancedb"))
    if LEDGER not in db.table_names():
        return 0
    return db.open_table(LEDGER).count_rows()


def kill_after_first_shard(manifest: Path, workspace: Path, timeout: float = 240.0) -> int:
    """Start `story index`, SIGKILL it once a shard is recorded; return the shards finished."""
    child = subprocess.Popen(
        index_command(manifest, workspace),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if (workspace / "lancedb").exists() and finished_shards(workspace) >= 1:
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == -signal.SIGKILL, f"story index ended with {code} before it could be killed"
    return finished_shards(workspace)


def clip_ids(workspace: Path) -> list[str]:
    return ClipIndex(str(workspace / "lancedb")).rows()["clip_id"].tolist()


def check_resumed(ids: list[str], clean: list[str]) -> tuple[int, int]:
    """(duplicates, missing) of a resumed table against a clean build."""
    return len(ids) - len(set(ids)), len(set(clean) - set(ids))


@pytest.mark.usefixtures("prefect_harness")
def test_kill_9_of_story_index_mid_run_then_resume_loses_and_repeats_nothing(
    tmp_path: Path, fault: Recorder
) -> None:
    manifest = write_clips(tmp_path / "lib", 24)
    shards = 24 // SHARD_SIZE
    workspace = tmp_path / "killed"
    done = kill_after_first_shard(manifest, workspace)

    resumed = build_index(
        str(manifest), Settings(workspace=workspace, shard_size=SHARD_SIZE).resolved(), False
    )
    clean_ws = tmp_path / "clean"
    build_index(
        str(manifest), Settings(workspace=clean_ws, shard_size=SHARD_SIZE).resolved(), False
    )
    duplicates, missing = check_resumed(clip_ids(workspace), clip_ids(clean_ws))

    mid_run = 1 <= done < shards
    fault(
        "crash: kill -9 of `story index` mid-run, then resume",
        "0 duplicate, 0 missing rows",
        f"{duplicates} duplicate, {missing} missing rows (killed after {done}/{shards} shards)",
        held=mid_run and duplicates == missing == 0,
    )
    assert mid_run, f"the kill came after {done} of {shards} shards"
    assert resumed["shards"]["skipped"] >= done
    assert (duplicates, missing) == (0, 0)
    assert resumed["rows"] == len(clip_ids(clean_ws)) == 24


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_repeated_kill_9_then_cli_resume_matches_a_clean_build(
    tmp_path: Path, fault: Recorder
) -> None:
    manifest = write_clips(tmp_path / "lib", 60)
    workspace = tmp_path / "killed"
    progress = [kill_after_first_shard(manifest, workspace) for _ in range(3)]
    done = subprocess.run(
        index_command(manifest, workspace),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    summary = json.loads(done.stdout)
    clean_ws = tmp_path / "clean"
    build_index(
        str(manifest), Settings(workspace=clean_ws, shard_size=SHARD_SIZE).resolved(), False
    )
    duplicates, missing = check_resumed(clip_ids(workspace), clip_ids(clean_ws))
    fault(
        "crash: three kill -9 in a row, resumed by the CLI",
        "0 duplicate, 0 missing rows",
        f"{duplicates} duplicate, {missing} missing rows (shards done after kills: {progress})",
        held=duplicates == missing == 0,
    )
    assert progress == sorted(progress)
    assert (duplicates, missing) == (0, 0)
    assert summary["rows"] == 60


@pytest.mark.usefixtures("ray_local")
def test_a_ray_actor_killed_mid_batch_has_its_item_retried(tmp_path: Path, fault: Recorder) -> None:
    marker = tmp_path / "died"
    items = list(range(8))
    spec = WorkerSpec(DiesOnce, {"marker": str(marker)})
    outcomes = list(RayExecutor(workers=2).map(spec, items))

    errors = [error for _, _, error in outcomes if error is not None]
    results = sorted(result[0] for _, result, error in outcomes if error is None)
    died_on = int(marker.read_text())
    fault(
        "crash: a Ray actor killed mid-batch",
        "all 8 items done once, 0 errors",
        f"{len(results)} items done, {len(errors)} errors (an actor died on item {died_on})",
        held=results == items and not errors,
    )
    assert results == items
    assert errors == []


def test_lineage_writers_killed_mid_append_leave_a_consistent_registry(
    tmp_path: Path, fault: Recorder
) -> None:
    context = multiprocessing.get_context("spawn")
    rounds = 20
    workers = [
        context.Process(target=register_renders, args=(str(tmp_path), w, None if w < 2 else rounds))
        for w in range(4)
    ]
    for process in workers:
        process.start()
    registry = LineageRegistry(tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(registry.renders()) < 8:
        time.sleep(0.005)
    for victim in workers[:2]:
        os.kill(victim.pid, signal.SIGKILL)
    for process in workers:
        process.join(timeout=120)
    codes = [p.exitcode for p in workers]

    story = load_story(STORIES / "good_basic.yaml")
    survivors = {
        render_manifest(story, f"{w}-{n}")["render_id"] for w in (2, 3) for n in range(rounds)
    }
    after = render_manifest(story, "after-the-crash")
    added = registry.add_render(after)
    keys = [(r["render_id"], r["kind"], r["asset_id"]) for r in registry.edges()]
    renders = set(registry.renders())
    edges_per_render = 1 + len(manifest_assets(after))
    partial = [rid for rid in renders if sum(k[0] == rid for k in keys) != edges_per_render]
    held = (
        codes == [-signal.SIGKILL, -signal.SIGKILL, 0, 0]
        and survivors <= renders
        and added == edges_per_render
        and len(keys) == len(set(keys))
        and not partial
    )
    fault(
        "concurrency: 4 lineage writers, 2 killed -9 mid-append",
        "survivors' renders all present, none partial, no duplicate edge, still writable",
        f"{len(renders)} renders, {len(partial)} partial, {len(keys) - len(set(keys))} duplicate"
        f" edges, exit codes {codes}",
        held=held,
    )
    assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0, 0]
    assert survivors <= renders
    assert after["render_id"] in renders and added == edges_per_render
    assert len(keys) == len(set(keys))
    assert partial == []


def _disk_full_at(target: Path) -> Path:
    """Make the next atomic write of `target` in this process hit ENOSPC: its temp is /dev/full."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    temp.symlink_to("/dev/full")
    return temp


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_leaves_no_partial_file_and_no_render_marked_complete(
    tmp_path: Path, fault: Recorder
) -> None:
    story = load_story(STORIES / "good_basic.yaml")
    records = [
        PlotRecord(
            index=p.index,
            text=p.text,
            query=p.query,
            prompt=p.prompt,
            clip_id=f"clip{p.index}",
            clip_uri=None,
            clip_caption=None,
            retrieved_frames=None,
            structure=None,
            generated=np.full((4, 16, 16, 3), 40 * p.index, np.uint8),
        )
        for p in story.plots
    ]
    out = tmp_path / "render"
    manifest = render_manifest(story, "full-disk")

    _disk_full_at(out / "story.mp4")
    with pytest.raises(AssemblyError) as video_error:
        write_outputs(out, story, records, fps=8.0)
    leftovers_video = sorted(p.name for p in out.rglob("*") if p.name.endswith(".partial"))
    outputs = write_outputs(out, story, records, fps=8.0)
    _disk_full_at(out / "manifest.json")
    with pytest.raises(LineageError) as manifest_error:
        write_manifest(out, {**manifest, "outputs": {"video": outputs["video"]}})
    leftovers = sorted(p.name for p in out.rglob("*") if p.name.endswith(".partial"))
    complete = (out / "manifest.json").exists()

    named = "story.mp4" in str(video_error.value) and "manifest.json" in str(manifest_error.value)
    clean = leftovers_video == leftovers == [] and not complete
    fault(
        "crash: disk full while writing story.mp4 / manifest.json (ENOSPC)",
        "clear error naming the file, no partial file, no manifest",
        ("clear error naming the file" if named else f"{video_error.value}; {manifest_error.value}")
        + (
            ", no partial file, no manifest"
            if clean
            else f", left {leftovers}, manifest={complete}"
        ),
    )
    assert "No space left" in str(video_error.value)
    assert named and clean
    for record in records:
        record.video_path = None
    write_outputs(out, story, records, fps=8.0)
    assert read_manifest(write_manifest(out, manifest))["status"] == "complete"
