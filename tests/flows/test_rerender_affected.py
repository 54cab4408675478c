"""Flow `rerender_affected`: exactly the renders that used an asset, once, failures quarantined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from story.flows.cli import app
from story.flows.rerender_affected import rerender_affected
from story.tasks.concepts.params import ConceptParams
from story.tasks.concepts.trainer import train_concept
from story.tasks.errors import StoryError
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.jobs import RenderError
from story.tasks.settings import Settings
from tests.flows.studio_fixture import build_studio, media_of, render

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_studio(tmp_path_factory.mktemp("studio"))


def _run(settings: Settings, asset: str, checkpoint: str | None = "next", **kwargs) -> dict:
    kwargs.setdefault("use_ray", False)
    return rerender_affected(asset, checkpoint, settings.resolved(), **kwargs)


def _clips(summary_or_manifest: dict) -> list[str]:
    manifest = (
        read_manifest(summary_or_manifest["manifest"])
        if "manifest" in summary_or_manifest
        else summary_or_manifest
    )
    return [p["clip_id"] for p in manifest["plots"]]


def test_exactly_the_renders_on_the_old_checkpoint_are_rerendered_once(
    studio: Settings, capfd
) -> None:
    ball, cube = render(studio, "ball"), render(studio, "cube")
    cone = render(studio, "cone", checkpoint="alt")
    registry = LineageRegistry(studio.workspace)
    before = set(registry.renders())

    capfd.readouterr()
    cli = CliRunner().invoke(
        app,
        [
            "rerender-affected",
            "--asset",
            "tiny",
            "--checkpoint",
            "next",
            "--dry-run",
            "--workspace",
            str(studio.workspace),
            "--json",
        ],
        env={"STORY_CHECKPOINTS": str(studio.checkpoints)},
    )
    assert cli.exit_code == 0, cli.output
    dry = json.loads(capfd.readouterr().out)
    assert sorted(dry["affected"]) == sorted([ball["render_id"], cube["render_id"]])
    assert sorted(dry["todo"]) == sorted(dry["affected"]) and dry["rerendered"] == []
    assert set(registry.renders()) == before, "a dry run renders nothing"

    first = _run(studio, "tiny")
    assert sorted(first["rerendered"]) == sorted([ball["render_id"], cube["render_id"]])
    assert first["quarantined"] == []
    new = {r["render_id"]: r["new_render"] for r in first["renders"]}
    assert sorted(registry.renders_using("next")) == sorted(new.values())
    for old in (ball, cube):
        again = read_manifest(Path(studio.workspace) / "renders" / new[old["render_id"]])
        assert again["inputs"]["checkpoint"]["name"] == "next"
        assert _clips(again) == _clips(old)
        assert again["inputs"]["seed"] == read_manifest(old["manifest"])["inputs"]["seed"]
    assert cone["render_id"] not in first["affected"]

    # Resumed or scheduled again (asset named by a sha256 prefix this time): nothing new.
    sha = checkpoint_sha256(Path(studio.checkpoints) / "t2v-tiny")
    second = _run(studio, sha[:12])
    assert second["rerendered"] == [] and second["todo"] == []
    assert {r["render_id"]: (r["status"], r["new_render"]) for r in second["renders"]} == {
        old: ("done", rid) for old, rid in new.items()
    }
    assert len(registry.renders()) == len(before) + 2


def test_a_failing_render_is_quarantined_and_the_rest_finish(tmp_path: Path) -> None:
    studio = build_studio(tmp_path, checkpoints=("next",))
    ball, cylinder = render(studio, "ball"), render(studio, "cylinder")
    assert read_manifest(cylinder["manifest"])["plots"][0]["clip_uri"].endswith("scene_3.mp4")
    media_of(studio, 3).unlink()  # the cylinder's clip is withdrawn from the library

    result = _run(studio, "tiny")
    assert result["rerendered"] == [ball["render_id"]]
    assert [q["render_id"] for q in result["quarantined"]] == [cylinder["render_id"]]
    assert "scene_3.mp4" in result["quarantined"][0]["reason"]
    assert LineageRegistry(studio.workspace).renders_using("next") == [
        next(r["new_render"] for r in result["renders"] if r["status"] == "rerendered")
    ]

    again = _run(studio, "tiny")
    status = {r["render_id"]: r["status"] for r in again["renders"]}
    assert status == {ball["render_id"]: "done", cylinder["render_id"]: "quarantined"}


def test_a_new_concept_pack_version_rerenders_its_renders_on_their_own_checkpoint(
    tmp_path: Path,
) -> None:
    from story.tasks.render.synthesize import load_t2v

    studio = build_studio(tmp_path, checkpoints=())
    pack = Path(studio.checkpoints) / "concepts" / "bob"
    images = tmp_path / "bob-images"
    images.mkdir()
    for i in range(2):
        frame = np.full((32, 32, 3), (200, 40 + 60 * i, 40), np.uint8)
        Image.fromarray(frame).save(images / f"bob_{i}.png")
    model = load_t2v(Path(studio.checkpoints) / "t2v-tiny", device="cpu")

    def train(seed: int) -> None:
        shutil.rmtree(pack, ignore_errors=True)
        params = ConceptParams(method="ti", steps=1, batch=1, seed=seed, threads=1)
        train_concept(
            model, "bob", images, "ball", params, out=pack, depth=lambda f: np.zeros(f.shape[:3])
        )

    train(seed=0)
    story = tmp_path / "bob.yaml"
    story.write_text(
        "title: Bob\ncharacters:\n  bob: {pack: concepts/bob, class: ball}\n"
        "plots:\n  - <bob> bounces on the grass\n"
    )
    with_bob, without = render(studio, str(story)), render(studio, "cube")
    assert _run(studio, "bob", None)["todo"] == []  # the pack has not changed: all current

    train(seed=1)
    result = _run(studio, "bob", None)
    assert result["rerendered"] == [with_bob["render_id"]]
    assert without["render_id"] not in result["affected"]
    new = read_manifest(Path(studio.workspace) / "renders" / result["renders"][0]["new_render"])
    old = read_manifest(with_bob["manifest"])
    assert new["inputs"]["checkpoint"] == old["inputs"]["checkpoint"]
    assert new["inputs"]["concepts"]["bob"] != old["inputs"]["concepts"]["bob"]
    assert _run(studio, "bob", None)["rerendered"] == []


def test_bad_assets_and_checkpoints_are_named(studio: Settings) -> None:
    ball = render(studio, "ball")
    clip = read_manifest(ball["manifest"])["plots"][0]["clip_id"]
    with pytest.raises(StoryError, match="is a clip.*checkpoint or a concept pack"):
        _run(studio, clip)
    with pytest.raises(RenderError, match="'nope'"):
        _run(studio, "tiny", "nope")
    assert _run(studio, "no-such-asset")["affected"] == []
