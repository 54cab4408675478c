"""The main job on the embedded default: sample library -> clip index -> a story render."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from story.tasks.settings import REPO_ROOT, Settings

SAMPLE_DIR = REPO_ROOT / "datasets" / "sample_library"
BUILD_SCRIPT = REPO_ROOT / "datasets" / "build_sample_library.py"
EXAMPLE_STORY = REPO_ROOT / "datasets" / "stories" / "lighthouse.yaml"


def ensure_sample_library() -> str:
    """Build the sample library (deterministic) when this checkout does not have it yet."""
    manifest = SAMPLE_DIR / "manifest.jsonl"
    if not manifest.exists():
        subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "--out", str(SAMPLE_DIR)],
            check=True,
            stdout=sys.stderr,
        )
    return str(manifest)


def run_demo(settings: Settings, queries: Sequence[str], use_ray: bool = True) -> dict[str, Any]:
    """Index the sample library, search it, render the example story; returns the report."""
    from story.flows.build_index import build_index
    from story.flows.render_story import render_story
    from story.models.text_encoder import load_text_encoder
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.search import search

    manifest = ensure_sample_library()
    summary = build_index(manifest, settings, use_ray=use_ray)
    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    encoder = load_text_encoder("minilm", device=settings.device)
    results = {q: [h.to_dict() for h in search(index, encoder, q, k=3)] for q in queries}
    render = render_story(str(EXAMPLE_STORY), settings, use_ray=use_ray)

    lines = [
        f"clip library: {summary['rows']} clips in {summary['lancedb_uri']} "
        f"(table version {summary['table_version']}; {summary['added']} added, "
        f"{len(summary['quarantined'])} quarantined)",
    ]
    for query, hits in results.items():
        lines.append(f"\nsearch: {query!r}")
        for rank, hit in enumerate(hits, 1):
            lines.append(f"  {rank}. {hit['score']:.4f}  {hit['caption']}  ({hit['uri']})")
    state = "reused (unchanged)" if render["reused"] else "rendered"
    lines += [
        f"\nstory {EXAMPLE_STORY.name}: render {render['render_id']} {state}",
        f"  video       {render['video']}",
        f"  storyboard  {render['storyboard']}",
        f"  timeline    {render['timeline']}",
        f"  manifest    {render['manifest']}",
    ]
    return {"index": summary, "searches": results, "render": render, "text": "\n".join(lines)}
