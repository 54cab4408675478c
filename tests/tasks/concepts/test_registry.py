"""Concepts by name: the workspace's and the bundled packs, the one for the render's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from story.models.t2v import random_tiny
from story.tasks.concepts.errors import ConceptError
from story.tasks.concepts.pack import ConceptPack
from story.tasks.concepts.registry import ConceptRegistry, fingerprint_of, resolve_concepts
from story.tasks.provenance.checkpoint_identity import checkpoint_fingerprint
from story.tasks.render.jobs import RenderError
from story.tasks.render.request import concept_folders
from story.tasks.script.story import Plot, Story
from story.tasks.settings import Settings


def _pack(folder: Path, name: str, checkpoint: Path, method: str = "timeinv") -> Path:
    """A pack of `<name>` recorded as trained for `checkpoint` (an untrained table suffices)."""
    return ConceptPack(
        name=name,
        class_word="ball",
        method=method,
        base_checkpoint=checkpoint_fingerprint(checkpoint),
        table=torch.zeros(2, 8),
        meta={"steps": 3},
    ).save(folder)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two checkpoints (t2v-tiny, alt) and bundled bob packs for each, plus one for nothing."""
    base = tmp_path_factory.mktemp("registry")
    ckpts = base / "checkpoints"
    tiny = random_tiny(frames=2, size=16, seed=0).save_pretrained(ckpts / "t2v-tiny")
    alt = random_tiny(frames=2, size=16, seed=1).save_pretrained(ckpts / "alt")
    other = random_tiny(frames=2, size=16, seed=2).save_pretrained(base / "elsewhere")
    _pack(ckpts / "concepts" / "bob", "bob", tiny)
    _pack(ckpts / "concepts" / "bob-alt", "bob", alt, method="timeinv_lora")
    _pack(ckpts / "concepts" / "ghost" / "old", "ghost", other)
    return base


def _settings(root: Path, workspace: str = "ws") -> Settings:
    return Settings(workspace=root / workspace, checkpoints=root / "checkpoints")


def test_a_name_resolves_to_the_pack_trained_for_the_renders_checkpoint(root: Path) -> None:
    settings = _settings(root)
    ckpts = root / "checkpoints"
    on_tiny = resolve_concepts(["bob"], {}, ckpts / "t2v-tiny", settings)
    on_alt = resolve_concepts(["bob"], {}, ckpts / "alt", settings)
    assert on_tiny == {"bob": str(ckpts / "concepts" / "bob")}
    assert on_alt == {"bob": str(ckpts / "concepts" / "bob-alt")}
    # The fingerprint is remembered by the checkpoint's content hash.
    memo = json.loads((root / "ws" / "cache" / "fingerprints.json").read_text())
    assert checkpoint_fingerprint(ckpts / "alt") in memo.values()
    assert fingerprint_of(ckpts / "alt", root / "ws") == checkpoint_fingerprint(ckpts / "alt")


def test_the_workspace_pack_wins_and_a_declared_pack_follows_the_checkpoint(root: Path) -> None:
    settings = _settings(root, "ws-own")
    ckpts = root / "checkpoints"
    own = _pack(root / "ws-own" / "concepts" / "bob", "bob", ckpts / "t2v-tiny")
    assert resolve_concepts(["bob"], {}, ckpts / "t2v-tiny", settings) == {"bob": str(own)}
    # The story declares the t2v-tiny pack; re-rendered on alt, bob is alt's pack of that name.
    declared = {"bob": ckpts / "concepts" / "bob"}
    on_alt = resolve_concepts([], declared, ckpts / "alt", settings)
    assert on_alt == {"bob": str(ckpts / "concepts" / "bob-alt")}
    on_tiny = resolve_concepts([], declared, ckpts / "t2v-tiny", settings)
    assert on_tiny == {"bob": str(ckpts / "concepts" / "bob")}


def test_an_unknown_name_lists_the_known_ones_with_their_checkpoints(root: Path) -> None:
    settings = _settings(root)
    with pytest.raises(ConceptError) as err:
        resolve_concepts(["zorb"], {}, root / "checkpoints" / "t2v-tiny", settings)
    message = str(err.value)
    assert "unknown concept <zorb>" in message
    assert "<bob> (alt, t2v-tiny)" in message and "<ghost>" in message
    # A known name without a pack for this checkpoint says which checkpoints it has and how to
    # train one for this one.
    with pytest.raises(ConceptError, match=r"<ghost> has no pack for checkpoint alt.*--checkpoint"):
        resolve_concepts(["ghost"], {}, root / "checkpoints" / "alt", settings)


def test_a_story_or_shot_naming_an_unknown_concept_is_refused_with_its_file(root: Path) -> None:
    plot = Plot(index=0, text="a <zorb> rolls", query="a ball rolls", prompt="a <zorb> rolls")
    story = Story("s", {}, (plot,), "stories/zorb.md", "prose")
    with pytest.raises(RenderError, match=r"stories/zorb.md: unknown concept <zorb>.*<bob>"):
        concept_folders(story, _settings(root), "tiny")
    no_concepts = Story("s", {}, (Plot(0, "a ball", "a ball", "a ball"),), "s.md", "prose")
    assert concept_folders(no_concepts, _settings(root), "no-such-checkpoint") == {}


def test_listing_shows_workspace_and_bundled_packs_with_their_checkpoint(root: Path) -> None:
    settings = _settings(root, "ws-list")
    _pack(root / "ws-list" / "concepts" / "zorb", "zorb", root / "checkpoints" / "alt")
    rows = ConceptRegistry(settings).listing()
    seen = {(r["name"], r["checkpoint"], r["origin"]) for r in rows}
    assert seen == {
        ("zorb", "alt", "workspace"),
        ("bob", "t2v-tiny", "bundled"),
        ("bob", "alt", "bundled"),
        ("ghost", None, "bundled"),
    }
    assert rows[0]["name"] == "zorb", "the workspace's packs come first"


def test_a_half_precision_pack_is_half_the_bytes_and_loads_as_float32(
    root: Path, tmp_path: Path
) -> None:
    full = ConceptPack.load(root / "checkpoints" / "concepts" / "bob")
    full.table = torch.linspace(-1, 1, 3840).reshape(10, 384)
    full.save(tmp_path / "full")
    full.save(tmp_path / "half", half=True)
    sizes = [(tmp_path / f / "concept.safetensors").stat().st_size for f in ("full", "half")]
    assert sizes[1] < 0.75 * sizes[0]
    half = ConceptPack.load(tmp_path / "half")
    assert half.table.dtype == torch.float32 and half.meta["dtype"] == "float16"
    assert torch.allclose(half.table, full.table, atol=1e-3)
