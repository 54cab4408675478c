"""Each plot's clip(s) for a render: pinned clip ids, or the top hits of the plot's query."""

from __future__ import annotations

from typing import Any

from story.tasks.library.media import sample_indices
from story.tasks.render.jobs import RenderError
from story.tasks.script.story import Plot, Story
from story.tasks.settings import Settings

CLIP_FIELDS = (
    "clip_id",
    "uri",
    "start",
    "end",
    "fps",
    "source_hash",
    "caption",
    "source",
    "license",
)


def retrieve(
    story: Story, settings: Settings, candidates: int, pins: dict[int, list[str]]
) -> tuple[dict[int, list[dict[str, Any]]], int]:
    """Plot index -> its clip rows (pinned ids, or the top `candidates` hits of its query), and
    the version of the clip table they came from."""
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.searcher import LibrarySearcher, query_encoders

    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    if not index.exists or index.count() == 0:
        raise RenderError(f"{settings.lancedb}: the clip library is empty; run `story index`")

    def pinned_ids(plot: Plot) -> list[str]:
        return pins.get(plot.index) or ([plot.clip_id] if plot.clip_id else [])

    queries = [plot.query for plot in story.plots if not pinned_ids(plot)]
    # The table in memory when it fits (`story.tasks.library.resident`): the hits `story search`
    # and the search service give, full-text ties included.
    searcher = LibrarySearcher(index, query_encoders(settings), resident=True)
    vectors = dict(zip(queries, searcher.embed(queries), strict=True)) if queries else {}
    chosen: dict[int, list[dict[str, Any]]] = {}
    for plot in story.plots:
        pinned = pinned_ids(plot)
        if pinned:
            found = {clip_id: index.get(clip_id) for clip_id in pinned}
            missing = [clip_id for clip_id, row in found.items() if row is None]
            if missing:
                raise RenderError(
                    f"{story.source}:{plot.line}: plot {plot.index} pins clip {missing[0]!r}, "
                    f"which is not in the library"
                )
            chosen[plot.index] = [row for clip_id in pinned if (row := found[clip_id])]
            continue
        hits = searcher.search(plot.query, k=candidates, vectors=vectors[plot.query])
        rows = [row for h in hits if (row := index.get(h.clip_id))]
        if not rows:
            raise RenderError(
                f"{story.source}:{plot.line}: no clip matches the query {plot.query!r}"
            )
        chosen[plot.index] = rows
    return chosen, index.version()


def frame_indices(clip: dict[str, Any], count: int, stride: int) -> tuple[int, ...]:
    """`count` frames of the clip at the library's stride, spread evenly when it is shorter."""
    fps = float(clip["fps"])
    first = round(float(clip["start"]) * fps)
    last = max(first + 1, round(float(clip["end"]) * fps))
    return tuple(sample_indices(first, last, count, stride))


def clip_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a plot job and the manifest keep of a library row."""
    return {k: row.get(k) for k in CLIP_FIELDS}
