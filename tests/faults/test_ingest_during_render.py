"""Ingest appends to the clip library while a render is synthesizing: the render keeps the
table version it retrieved from, its manifest and lineage name that version, and the new clips
are in the library afterwards."""

from __future__ import annotations

from pathlib import Path

import lancedb
import numpy as np
import pytest

from story.flows.build_index import build_index
from story.flows.render_story import render_story
from story.tasks.library.index import ClipIndex
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.render_plot import PlotRenderer
from story.tasks.settings import Settings
from tests.faults.conftest import Recorder
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import FAST, story_file, story_studio

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _version(settings: Settings) -> int:
    return ClipIndex(settings.lancedb, settings.clips_table).version()


def test_a_render_pins_the_table_version_while_ingest_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Recorder
) -> None:
    first = build_library(tmp_path / "library", n_good=4, with_bad=False)
    settings = story_studio(tmp_path, first.manifest)
    more = build_library(tmp_path / "more", n_good=6, with_bad=False)
    before = _version(settings)
    ingested: list[dict] = []
    original = PlotRenderer.synthesize

    def synthesize_while_ingesting(self: PlotRenderer, job, structure: np.ndarray) -> np.ndarray:
        if not ingested:
            ingested.append(build_index(str(more.manifest), settings.resolved(), use_ray=False))
        return original(self, job, structure)

    monkeypatch.setattr(PlotRenderer, "synthesize", synthesize_while_ingesting)
    summary = render_story(
        str(story_file(settings)), settings.resolved(), params=FAST, use_ray=False
    )
    after = _version(settings)

    manifest = read_manifest(summary["manifest"])
    pinned = manifest["library"]["version"]
    table = lancedb.connect(settings.lancedb).open_table(settings.clips_table)
    table.checkout(pinned)
    ids_then = set(table.to_arrow().column("clip_id").to_pylist())
    used = [p["clip_id"] for p in manifest["plots"]]
    named = LineageRegistry(settings.workspace).renders_using(f"{settings.clips_table}@{pinned}")
    held = (
        ingested[0]["added"] >= 2
        and after > before
        and pinned == before
        and set(used) <= ids_then
        and summary["render_id"] in named
    )
    fault(
        "concurrency: ingest appends clips while a render synthesizes",
        "render pins the version it retrieved from; lineage names it; new clips indexed",
        "render pins the version it retrieved from; lineage names it; new clips indexed"
        if held
        else f"version before {before}, after {after}, manifest {pinned}, "
        f"added {ingested[0]['added'] if ingested else None}, lineage {named}",
        held=held,
    )
    assert ingested and ingested[0]["added"] >= 2
    assert after > before
    assert pinned == before
    assert set(used) <= ids_then
    assert summary["render_id"] in named
