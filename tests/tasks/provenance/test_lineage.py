"""Lineage: manifests round-trip, render ids pin every input, the registry answers audits."""

from __future__ import annotations

import copy
import json
import multiprocessing
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from story.tasks.hashing import (
    canonical_json,
    frames_sha256,
    render_id,
    sha256_file,
    sha256_json,
    sha256_tree,
)
from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.provenance.dvc_lookup import dvc_hash
from story.tasks.provenance.environment import environment_info
from story.tasks.provenance.lineage import LineageRegistry, manifest_assets
from story.tasks.provenance.manifest import (
    LineageError,
    build_manifest,
    describe_asset,
    read_manifest,
    write_manifest,
)
from story.tasks.script.parse import load_story
from story.tasks.script.story import effective_seed

STORIES = Path(__file__).resolve().parents[2] / "test_files" / "stories"


def make_manifest(tag: str, clips: list[str], checkpoint: str = "tiny") -> dict[str, Any]:
    """A complete manifest as the render flow writes it, for a story named `tag`."""
    checkpoint_sha = sha256_json({"checkpoint": checkpoint})
    inputs = {
        "story": sha256_json({"story": tag}),
        "plots": [
            {"index": i, "prompt": f"{tag} plot {i}", "seed": i, "clip_id": c}
            for i, c in enumerate(clips)
        ],
        "checkpoints": {checkpoint: checkpoint_sha},
        "concepts": {"bob": "b" * 64},
        "library_version": 3,
        "params": {"steps": 20, "guidance": 7.5, "tau": 500},
    }
    return {
        "schema": 1,
        "render_id": render_id(inputs),
        "status": "complete",
        "created": "2026-11-22T05:00:00+00:00",
        "inputs": inputs,
        "story": {"source": f"stories/{tag}.yaml", "sha256": inputs["story"], "title": tag},
        "environment": {"git": {"commit": "f" * 40, "dirty": False}, "packages": {}},
        "checkpoints": [
            {
                "name": checkpoint,
                "path": f"checkpoints/{checkpoint}",
                "sha256": checkpoint_sha,
                "dvc_md5": "d" * 32,
            }
        ],
        "concepts": [{"name": "bob", "ref": "concepts/bob", "sha256": "b" * 64, "dvc_md5": None}],
        "library": {"uri": "workspace/lancedb", "table": "clips", "version": 3},
        "plots": [
            {
                "index": i,
                "text": f"plot {i}",
                "prompt": f"{tag} plot {i}",
                "seed": i,
                "clip_id": c,
                "clip_uri": f"media/{c}.mp4",
                "clip_source_sha256": "s" + c,
                "depth_key": f"{c}:depth-tiny:16x8",
                "video": f"plots/plot_{i:03d}.mp4",
            }
            for i, c in enumerate(clips)
        ],
        "outputs": {
            "video": "story.mp4",
            "storyboard": "storyboard.html",
            "timeline": "timeline.otio",
        },
    }


def test_manifest_round_trip(tmp_path: Path):
    manifest = make_manifest("lighthouse", ["c1", "c2"])
    path = write_manifest(tmp_path / manifest["render_id"], manifest)
    assert path.name == "manifest.json"
    assert read_manifest(path.parent) == manifest
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.pop("plots"), "plots"),
        (lambda m: m.update(render_id="0" * 16), "does not match"),
        (lambda m: m["story"].pop("sha256"), "story.sha256"),
        (lambda m: m.update(schema=99), "schema"),
        (lambda m: m["outputs"].update(video="../../elsewhere.mp4"), "'..'"),
        (lambda m: m["plots"][0].update(video="/etc/passwd"), "relative"),
    ],
)
def test_invalid_manifest_is_refused_and_not_written(tmp_path: Path, change, problem: str):
    manifest = make_manifest("x", ["c1"])
    change(manifest)
    with pytest.raises(LineageError, match=problem):
        write_manifest(tmp_path, manifest)
    assert not (tmp_path / "manifest.json").exists()


def test_unreadable_manifest_names_the_file(tmp_path: Path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(LineageError, match="manifest.json: not a JSON manifest"):
        read_manifest(tmp_path)
    with pytest.raises(LineageError, match="cannot read"):
        read_manifest(tmp_path / "missing")


def test_render_id_is_stable_and_order_free():
    inputs = make_manifest("a", ["c1", "c2"])["inputs"]
    shuffled = json.loads(json.dumps(inputs), object_pairs_hook=lambda kv: dict(reversed(kv)))
    assert render_id(inputs) == render_id(shuffled) == render_id(copy.deepcopy(inputs))
    assert canonical_json(inputs) == canonical_json(shuffled)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda i: i.update(story="0" * 64),
        lambda i: i["plots"][1].update(seed=99),
        lambda i: i["plots"][0].update(clip_id="other"),
        lambda i: i["plots"][0].update(prompt="another prompt"),
        lambda i: i["checkpoints"].update(tiny="e" * 64),
        lambda i: i["concepts"].update(bob="a" * 64),
        lambda i: i.update(library_version=4),
        lambda i: i["params"].update(guidance=7.0),
        lambda i: i["plots"].reverse(),
    ],
)
def test_render_id_changes_with_every_input(mutate):
    inputs = make_manifest("a", ["c1", "c2"])["inputs"]
    changed = copy.deepcopy(inputs)
    mutate(changed)
    assert render_id(changed) != render_id(inputs)


def test_tree_and_file_hashes_follow_content(tmp_path: Path):
    folder = tmp_path / "ckpt"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "weights.safetensors").write_bytes(b"abc")
    (folder / "config.json").write_text("{}")
    first = sha256_tree(folder)
    assert sha256_tree(folder) == first
    (folder / "config.json").write_text('{"a": 1}')
    assert sha256_tree(folder) != first
    (folder / "config.json").write_text("{}")
    (folder / "unet" / "weights.safetensors").rename(folder / "unet" / "w.safetensors")
    assert sha256_tree(folder) != first
    assert sha256_tree(folder / "config.json") == sha256_file(folder / "config.json")
    with pytest.raises(ValueError):
        sha256_json({"x": float("nan")})


def test_environment_info_reports_commit_dirty_flag_and_versions(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(
            [
                "git",
                "-C",
                str(tmp_path),
                "-c",
                "user.email=t@example.com",
                "-c",
                "user.name=t",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-q", "-m", "one")
    info = environment_info(device="cpu", repo=tmp_path)
    assert info["git"] == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    assert info["device"] == "cpu"
    assert info["packages"]["numpy"] and "lancedb" in info["packages"]
    (tmp_path / "f.txt").write_text("2")
    assert environment_info(device="cpu", repo=tmp_path)["git"]["dirty"] is True
    assert environment_info(device="cpu", repo=tmp_path / "nothing")["git"]["commit"] is None


def test_dvc_hash_reads_dvc_files_and_lock_outs(tmp_path: Path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: model\n  hash: md5\n"
    )
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  index:\n    cmd: story index\n    outs:\n"
        "    - path: datasets/index\n      hash: md5\n      md5: fedcba9876543210.dir\n"
    )
    (tmp_path / "datasets" / "index").mkdir(parents=True)
    assert dvc_hash(tmp_path / "model", repo=tmp_path) == "0123456789abcdef0123456789abcdef.dir"
    assert dvc_hash(tmp_path / "datasets" / "index", repo=tmp_path) == "fedcba9876543210.dir"
    assert dvc_hash(tmp_path / "datasets", repo=tmp_path) is None


def register(workspace: Path, manifest: dict[str, Any]) -> LineageRegistry:
    folder = workspace / "renders" / manifest["render_id"]
    registry = LineageRegistry(workspace)
    registry.add_render(manifest, write_manifest(folder, manifest))
    return registry


def test_registry_answers_which_renders_used_an_asset(tmp_path: Path):
    first = make_manifest("one", ["clipA", "clipB"])
    second = make_manifest("two", ["clipB", "clipC"], checkpoint="big")
    register(tmp_path, first)
    registry = register(tmp_path, second)
    one, two = first["render_id"], second["render_id"]
    assert registry.renders() == [one, two]
    assert registry.renders_using("clipB") == [one, two]
    assert registry.renders_using("clipA") == [one]
    assert registry.renders_using("media/clipC.mp4") == [two]
    assert registry.renders_using("big") == [two]
    assert registry.renders_using(first["checkpoints"][0]["sha256"][:12]) == [one]
    assert registry.renders_using("bob") == [one, two]
    assert registry.renders_using("clips@3") == [one, two]
    assert registry.renders_using("nothing-like-this") == []
    assert registry.add_render(first, tmp_path / "renders" / one / "manifest.json") == 0


def test_registry_tree_follows_the_manifest(tmp_path: Path):
    manifest = make_manifest("one", ["clipA", "clipB"])
    registry = register(tmp_path, manifest)
    tree = registry.tree(manifest["render_id"][:6])
    assert tree["render_id"] == manifest["render_id"]
    assert tree["title"] == "one"
    assert tree["git"]["commit"] == "f" * 40
    assert [p["clip"]["id"] for p in tree["plots"]] == ["clipA", "clipB"]
    assert tree["plots"][1]["depth_key"] == "clipB:depth-tiny:16x8"
    assert tree["checkpoints"][0]["name"] == "tiny"
    assert {a["id"] for a in tree["assets"]["clip"]} == {"clipA", "clipB"}
    (tmp_path / "renders" / manifest["render_id"] / "manifest.json").unlink()
    assert registry.tree(manifest["render_id"])["manifest_missing"] is True
    with pytest.raises(LineageError, match="no render"):
        registry.tree("zzzz")


def test_registry_refuses_incomplete_renders_and_skips_torn_lines(tmp_path: Path):
    manifest = make_manifest("one", ["clipA"])
    manifest["status"] = "failed"
    registry = LineageRegistry(tmp_path)
    with pytest.raises(LineageError, match="not complete"):
        registry.add_render(manifest)
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text('{"render_id": "torn", "kind": "clip", "asset_')
    good = make_manifest("two", ["clipB"])
    registry.add_render(good)
    assert registry.renders() == [good["render_id"]]
    assert registry.renders_using("clipB") == [good["render_id"]]


def _register_many(workspace: str, worker: int, rounds: int, start: Any) -> None:
    """Each round all workers race to add the same render, then each adds one of its own."""
    for n in range(rounds):
        start.wait()
        LineageRegistry(workspace).add_render(make_manifest(f"common{n}", ["shared"]))
        own = make_manifest(f"w{worker}-{n}", [f"clip{worker}-{n}", "shared"])
        LineageRegistry(workspace).add_render(own)


def test_four_concurrent_writers_lose_and_tear_nothing(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    rounds = 8
    workers = [
        context.Process(target=_register_many, args=(str(tmp_path), w, rounds, start))
        for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    registry = LineageRegistry(tmp_path)
    rows = [json.loads(line) for line in registry.path.read_text().splitlines()]
    common = [make_manifest(f"common{n}", ["shared"]) for n in range(rounds)]
    own = [
        make_manifest(f"w{w}-{n}", [f"clip{w}-{n}", "shared"])
        for w in range(4)
        for n in range(rounds)
    ]
    expected = {m["render_id"] for m in common + own}
    assert set(registry.renders()) == expected
    assert set(registry.renders_using("shared")) == expected
    keys = [(r["render_id"], r["kind"], r["asset_id"]) for r in rows]
    assert len(keys) == len(set(keys)), "a render was registered twice"
    assert len(rows) == sum(1 + len(manifest_assets(m)) for m in common + own)


def test_build_manifest_pins_assets_and_round_trips(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    checkpoint = tmp_path / "checkpoints" / "tiny"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    entry = describe_asset("tiny", checkpoint, repo=tmp_path)
    assert entry == {
        "name": "tiny",
        "path": "checkpoints/tiny",
        "sha256": sha256_tree(checkpoint),
        "dvc_md5": None,
    }
    with pytest.raises(LineageError, match="does not exist"):
        describe_asset("gone", tmp_path / "gone")
    inputs = {"story": story.content_hash(), "checkpoint": entry["sha256"], "seed": 1}
    manifest = build_manifest(
        inputs=inputs,
        story=story,
        plots=[{"index": p.index, "clip_id": f"c{p.index}"} for p in story.plots],
        outputs={"video": "story.mp4"},
        checkpoints=[entry],
        environment={"git": {"commit": None, "dirty": None}},
    )
    assert manifest["render_id"] == render_id(inputs)
    assert manifest["story"]["sha256"] == story.content_hash()
    path = write_manifest(tmp_path / "render", manifest)
    assert read_manifest(path) == manifest
    registry = LineageRegistry(tmp_path)
    registry.add_render(manifest, path)
    assert registry.renders_using("tiny") == [manifest["render_id"]]
    assert registry.renders_using("c2") == [manifest["render_id"]]


def test_frames_hash_sees_one_changed_pixel():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    changed = frames.copy()
    changed[3, 7, 7, 2] = 1
    assert frames_sha256(frames) == frames_sha256(frames.copy())
    assert frames_sha256(frames) != frames_sha256(changed)
    assert frames_sha256(frames) != frames_sha256(frames.reshape(4, 8, 24))


def test_manifest_into_an_unusable_folder_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LineageError, match="cannot write the manifest"):
        write_manifest(blocker / "render", make_manifest("x", ["c1"]))


def test_synthetic_render_end_to_end_is_registered_and_auditable(tmp_path: Path):
    """The wiring a render flow does, with made-up frames in place of the models."""
    story = load_story(STORIES / "good_basic.yaml")
    seeds = [effective_seed(p, 1234) for p in story.plots]
    inputs = {
        "story": story.content_hash(),
        "plots": [
            {"index": p.index, "seed": s, "clip_id": f"clip{p.index}"}
            for p, s in zip(story.plots, seeds, strict=True)
        ],
        "checkpoint": "c" * 64,
    }
    out = tmp_path / "renders" / render_id(inputs)
    rng = np.random.default_rng(0)
    records = [
        PlotRecord(
            index=p.index,
            text=p.text,
            query=p.query,
            prompt=p.prompt,
            clip_id=f"clip{p.index}",
            clip_uri=f"media/{p.index}.mp4",
            clip_caption="a ball",
            retrieved_frames=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
            structure=rng.uniform(-1, 1, (4, 16, 16)).astype(np.float32),
            generated=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
            params={"seed": s},
        )
        for p, s in zip(story.plots, seeds, strict=True)
    ]
    outputs = write_outputs(out, story, records, fps=8, render_id=render_id(inputs))
    manifest = build_manifest(
        inputs=inputs,
        story=story,
        plots=[{**r.manifest_entry(out), "seed": r.params["seed"]} for r in records],
        outputs=outputs,
        checkpoints=[{"name": "tiny", "sha256": "c" * 64}],
        environment={"git": {"commit": None, "dirty": None}},
    )
    registry = LineageRegistry(tmp_path)
    registry.add_render(manifest, write_manifest(out, manifest))
    tree = registry.tree(manifest["render_id"])
    assert [p["clip"]["id"] for p in tree["plots"]] == ["clip0", "clip1", "clip2"]
    assert all((out / p["video"]).is_file() for p in tree["plots"])
    assert registry.renders_using("clip1") == registry.renders_using("tiny") == [out.name]
    assert sorted(f.name for f in out.iterdir()) == [
        "contact_sheet.png",
        "delivery",
        "manifest.json",
        "plots",
        "poster.png",
        "story.mp4",
        "storyboard",
        "storyboard.html",
        "timeline.otio",
    ]
