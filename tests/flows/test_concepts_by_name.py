"""Concepts by name wherever a prompt goes: `story shot`, stories with or without a cast list,
`rerender` on another checkpoint, and `story concept list` in a fresh workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from story.flows.cli import app
from story.flows.render_shot import render_shot
from story.flows.rerender import rerender
from story.tasks.concepts.params import ConceptParams
from story.tasks.concepts.trainer import train_concept
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.jobs import RenderError
from story.tasks.settings import Settings
from tests.flows.studio_fixture import FAST, build_studio, render

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A studio with checkpoints tiny and alt, and a bundled bob pack trained for each."""
    from story.tasks.render.synthesize import load_t2v

    root = tmp_path_factory.mktemp("by-name")
    settings = build_studio(root, checkpoints=("alt",))
    images = root / "bob-images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), (200, 40 + 60 * i, 40), np.uint8)).save(
            images / f"bob_{i}.png"
        )
    bundled = Path(settings.checkpoints) / "concepts"
    for name, folder in (("t2v-tiny", "bob"), ("alt", "bob-alt")):
        model = load_t2v(Path(settings.checkpoints) / name, device="cpu")
        params = ConceptParams(method="ti", steps=1, batch=1, threads=1)
        train_concept(model, "bob", images, "ball", params, out=bundled / folder, depth=_flat_depth)
    return settings


def _flat_depth(frames: np.ndarray) -> np.ndarray:
    return np.zeros(frames.shape[:3], np.float32)


def _pack_sha(settings: Settings, folder: str) -> str:
    return checkpoint_sha256(Path(settings.checkpoints) / "concepts" / folder)


def test_a_shot_names_a_bundled_concept_and_gets_the_pack_for_its_checkpoint(
    studio: Settings,
) -> None:
    prompt = "a <bob> rolls across a wooden floor"
    # No --query: retrieval asks for the pack's class word doing what the prompt says.
    on_tiny = render_shot(None, prompt, studio.resolved(), params=FAST)
    story = read_manifest(on_tiny["manifest"])["story"]
    assert story["script"]["plots"][0]["query"] == "a ball rolls across a floor"
    on_alt = render_shot("a ball bounces", prompt, studio.resolved(), checkpoint="alt", params=FAST)
    assert read_manifest(on_tiny["manifest"])["inputs"]["concepts"] == {
        "bob": _pack_sha(studio, "bob")
    }
    assert read_manifest(on_alt["manifest"])["inputs"]["concepts"] == {
        "bob": _pack_sha(studio, "bob-alt")
    }


def test_an_unknown_concept_is_refused_with_the_known_ones(studio: Settings) -> None:
    with pytest.raises(RenderError, match=r"unknown concept <zorb>.*<bob> \(alt, t2v-tiny\)"):
        render_shot("a ball bounces", "a <zorb> bounces", studio.resolved(), params=FAST)


def test_stories_with_and_without_a_cast_list_and_their_rerender(studio: Settings) -> None:
    root = Path(studio.workspace).parent
    prose = root / "bob.md"
    prose.write_text("A <bob> bounces on the grass. Then it stops.\n")
    declared = root / "bob.yaml"
    declared.write_text(
        "title: Bob\ncharacters:\n  bob: {pack: concepts/bob, class: ball}\n"
        "plots:\n  - <bob> bounces on the grass\n"
    )
    from_prose = render(studio, str(prose))
    first = render(studio, str(declared))
    for summary in (from_prose, first):
        assert read_manifest(summary["manifest"])["inputs"]["concepts"] == {
            "bob": _pack_sha(studio, "bob")
        }
    # The story names the t2v-tiny pack; on alt the same character is alt's pack.
    again = rerender(first["render_id"], "alt", studio.resolved(), use_ray=False)
    assert read_manifest(again["manifest"])["inputs"]["concepts"] == {
        "bob": _pack_sha(studio, "bob-alt")
    }


def test_concept_list_in_a_fresh_workspace_shows_the_bundled_bob(tmp_path: Path, capfd) -> None:
    capfd.readouterr()
    result = CliRunner().invoke(
        app, ["concept", "list", "--workspace", str(tmp_path / "fresh"), "--json"]
    )
    assert result.exit_code == 0
    rows = json.loads(capfd.readouterr().out)["concepts"]
    bundled = {(r["name"], r["checkpoint"]) for r in rows if r["origin"] == "bundled"}
    assert ("bob", "t2v-tiny") in bundled


def test_concept_copy_publishes_a_pack_at_half_precision(tmp_path: Path, capfd) -> None:
    from story.tasks.concepts.pack import ConceptPack
    from story.tasks.settings import REPO_ROOT

    source = REPO_ROOT / "checkpoints" / "concepts" / "bob"
    capfd.readouterr()
    result = CliRunner().invoke(
        app, ["concept", "copy", str(source), str(tmp_path / "bob"), "--half", "--json"]
    )
    assert result.exit_code == 0
    assert json.loads(capfd.readouterr().out)["name"] == "bob"
    original, copy = ConceptPack.load(source), ConceptPack.load(tmp_path / "bob")
    assert copy.base_checkpoint == original.base_checkpoint
    assert np.allclose(copy.table.numpy(), original.table.numpy(), atol=2e-3)
    size = (tmp_path / "bob" / "concept.safetensors").stat().st_size
    assert size < 0.6 * (source / "concept.safetensors").stat().st_size
    broken = CliRunner().invoke(app, ["concept", "copy", str(tmp_path), str(tmp_path / "x")])
    assert broken.exit_code == 2
