"""The render manifest schema: a real manifest validates, round-trips byte for byte, is typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from story.tasks.provenance.manifest import (
    MANIFEST_NAME,
    LineageError,
    RenderManifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)

LIGHTHOUSE = Path(__file__).resolve().parents[2] / "test_files" / "manifests" / "lighthouse.json"


def test_a_real_render_manifest_reads_and_rewrites_byte_for_byte(tmp_path: Path) -> None:
    manifest = read_manifest(LIGHTHOUSE)
    written = write_manifest(tmp_path, manifest)
    assert written == tmp_path / MANIFEST_NAME
    assert written.read_bytes() == LIGHTHOUSE.read_bytes()


def test_the_model_gives_typed_access_and_keeps_unknown_keys() -> None:
    raw = json.loads(LIGHTHOUSE.read_text())
    model = validate_manifest(raw)
    assert isinstance(model, RenderManifest)
    assert model.render_id == raw["render_id"] and model.schema_version == 1
    assert [p.index for p in model.plots] == [0, 1, 2, 3]
    assert model.plots[0].video == "plots/plot_000.mp4"
    assert model.checkpoints[0].name == "tiny" and model.concepts[0].name == "bob"
    assert model.library is not None and isinstance(model.library.version, int)
    assert model.plots[0].model_extra["frames_sha256"] == raw["plots"][0]["frames_sha256"]
    assert model.model_dump(by_alias=True, exclude_unset=True) == raw


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update(status=3), "status"),
        (lambda m: m["plots"][0].update(index="0"), r"plots\.0\.index"),
        (lambda m: m["plots"][0].update(index=True), r"plots\.0\.index"),
        (lambda m: m.update(plots=[]), "plots"),
        (lambda m: m.update(render_id="not-an-id!"), "render_id"),
        (lambda m: m["outputs"].update(plots=["plots/a.mp4", "../b.mp4"]), "'..'"),
        (lambda m: m.update(checkpoints=["tiny"]), r"checkpoints\.0"),
        (lambda m: m["library"].update(version="twelve"), r"library\.version"),
        (lambda m: m.update(inputs={**m["inputs"], "seed": 1}), "does not match"),
    ],
)
def test_each_malformed_part_is_named(change, problem: str) -> None:
    manifest = json.loads(LIGHTHOUSE.read_text())
    change(manifest)
    with pytest.raises(LineageError, match=f"lighthouse.json: .*{problem}"):
        validate_manifest(manifest, "renders/x/lighthouse.json")


def test_a_newer_writers_extra_fields_are_accepted(tmp_path: Path) -> None:
    manifest = json.loads(LIGHTHOUSE.read_text())
    manifest["delivery"] = {"fps": 24}
    manifest["plots"][0]["retime"] = {"method": "blend"}
    assert read_manifest(write_manifest(tmp_path, manifest)) == manifest


def test_the_json_schema_names_what_is_required() -> None:
    schema = RenderManifest.model_json_schema(by_alias=True)
    assert set(schema["required"]) == {"schema", "render_id", "status", "story", "plots", "outputs"}
