"""Render faults: an unwritable output folder, four `story render` at once, and a checkpoint
changed under a pinned hash met by `story reproduce`. Slow: each needs a real tiny render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from story.flows.cli import app
from story.flows.render_story import render_story
from story.tasks.errors import StoryError
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.settings import Settings
from tests.faults.conftest import REPO, Recorder, child_env
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import FAST, story_file, story_studio

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An indexed library of four clips, a tiny random checkpoint and the bundled depth net."""
    root = tmp_path_factory.mktemp("studio")
    library = build_library(root / "library", n_good=4, with_bad=False)
    return story_studio(root, library.manifest)


def _manifests(root: Path) -> list[Path]:
    return sorted(root.rglob("manifest.json")) if root.exists() else []


def test_an_unwritable_output_folder_is_a_clear_error_and_no_render_is_complete(
    studio: Settings, tmp_path: Path, fault: Recorder
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the renders folder should be")
    before = LineageRegistry(studio.workspace).renders()
    with pytest.raises(StoryError) as caught:
        render_story(
            str(story_file(studio)),
            studio.resolved(),
            out=str(blocker / "renders"),
            params=FAST,
            use_ray=False,
        )
    named = str(blocker) in str(caught.value)
    left = _manifests(tmp_path)
    registered = LineageRegistry(studio.workspace).renders() != before
    fault(
        "render: output folder unwritable (a file in the way)",
        "clear error naming the folder, no manifest, nothing registered",
        ("clear error naming the folder" if named else f"error: {caught.value}")
        + (", no manifest" if not left else f", manifests left: {left}")
        + (", nothing registered" if not registered else ", a render was registered"),
    )
    assert named, caught.value
    assert left == []
    assert not registered


def test_four_story_renders_at_once_give_four_complete_manifests_and_one_lineage(
    studio: Settings, tmp_path: Path, fault: Recorder
) -> None:
    env = dict(child_env(), STORY_CHECKPOINTS=str(studio.checkpoints))
    children = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "story.flows.cli", "render", str(story_file(studio))),
                *("--workspace", str(studio.workspace), "--seed", str(100 + n)),
                *("--steps", "2", "--guidance", "2.0", "--no-ray", "--json"),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [child.communicate(timeout=900)[0] for child in children]
    codes = [child.returncode for child in children]
    summaries = [json.loads(out) for out in outputs if out.strip()]
    ids = {s["render_id"] for s in summaries}
    complete = [read_manifest(s["manifest"])["status"] == "complete" for s in summaries]
    registry = LineageRegistry(studio.workspace)
    edges = registry.edges()
    keys = [(r["render_id"], r["kind"], r["asset_id"]) for r in edges]
    consistent = ids <= set(registry.renders()) and len(keys) == len(set(keys))
    fault(
        "render: 4 `story render` at once",
        "4 complete manifests, consistent lineage",
        f"{sum(complete)} complete manifests (exit codes {codes}), "
        + ("consistent lineage" if consistent else "lineage missing renders or duplicated"),
        held=codes == [0] * 4 and len(ids) == 4 and all(complete) and consistent,
    )
    assert codes == [0, 0, 0, 0]
    assert len(ids) == 4 and all(complete)
    assert consistent
    for summary in summaries:
        assert registry.tree(summary["render_id"])["status"] == "complete"


def test_story_reproduce_refuses_a_checkpoint_changed_under_its_pinned_hash(
    studio: Settings, fault: Recorder
) -> None:
    summary = render_story(str(story_file(studio)), studio.resolved(), params=FAST, use_ray=False)
    weights = next((Path(studio.checkpoints) / "t2v-tiny" / "unet").glob("*.safetensors"))
    original = weights.read_bytes()
    env = {"STORY_CHECKPOINTS": str(studio.checkpoints)}
    try:
        tampered = bytearray(original)
        tampered[-5] ^= 0xFF
        weights.write_bytes(bytes(tampered))
        result = CliRunner().invoke(
            app, ["reproduce", summary["render_id"], "--workspace", str(studio.workspace)], env=env
        )
    finally:
        weights.write_bytes(original)
    lines = result.stderr.strip().splitlines()
    says_why = len(lines) == 1 and "checkpoint 'tiny'" in lines[0] and "changed" in lines[0]
    fault(
        "render: checkpoint changed under a pinned hash -> `story reproduce`",
        "exit 2, refuses and says which checkpoint changed",
        f"exit {result.exit_code}, "
        + ("refuses and says which checkpoint changed" if says_why else repr(result.stderr[:200])),
    )
    assert result.exit_code == 2
    assert says_why, result.stderr
    assert os.path.exists(summary["manifest"])
