"""Motion-aware ranking, clips without captions, and one hit per source, on a small real table.

The table is written through `ClipIndex` like ingest writes it; the encoders are stand-ins with
known vectors, so each test controls exactly one piece of evidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from story.tasks.library.index import ClipIndex
from story.tasks.library.motion import CAMERA_LABELS, MOTION_LABELS
from story.tasks.library.query_intent import QueryIntent, parse_query
from story.tasks.library.rerank import RankWeights, diversify, diversity_key, score_row
from story.tasks.library.search import SearchError, search
from story.tasks.world.miniworld import SHAPES

DIM = 8


class FixedEncoder:
    """A text encoder whose every sentence embeds to the same unit vector."""

    def __init__(self, vector: np.ndarray, dim: int = DIM, name: str = "fixed") -> None:
        self.vector, self.dim, self.name = vector.astype(np.float32), dim, name

    def embed_sentences(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.tile(self.vector, (len(texts), 1))

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return self.embed_sentences(texts)


def probs(labels: tuple[str, ...], label: str, p: float = 0.9) -> list[float]:
    rest = (1.0 - p) / (len(labels) - 1)
    return [p if name == label else rest for name in labels]


def row(
    cid: str,
    motion: str,
    camera: str = "static",
    caption: str = "",
    source: str | None = None,
    text: np.ndarray | None = None,
    visual: np.ndarray | None = None,
    shape: str | None = None,
) -> dict:
    from story.tasks.library.ingest import caption_slots

    base = np.ones(DIM, np.float32) / np.sqrt(DIM)
    return {
        "clip_id": cid,
        "uri": f"/media/{source or cid}.mp4",
        "source_hash": source or cid,
        "source_shot": f"{source or cid}:0",
        "start": 0.0,
        "end": 2.0,
        "duration": 2.0,
        "caption": caption,
        "text_vector": (base if text is None else text).tolist(),
        "visual_vector": (base if visual is None else visual).tolist(),
        "motion_label": motion,
        "camera_label": camera,
        "motion_probs": probs(MOTION_LABELS, motion),
        "camera_probs": probs(CAMERA_LABELS, camera),
        "shape_probs": probs(SHAPES, shape) if shape else None,
        **caption_slots(caption),
    }


def table(tmp_path: Path, rows: list[dict]) -> ClipIndex:
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=DIM)
    index.add(rows)
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return index


def unit(i: int) -> np.ndarray:
    return np.eye(DIM, dtype=np.float32)[i]


def test_the_asked_motion_wins_over_an_equal_looking_clip(tmp_path: Path) -> None:
    index = table(
        tmp_path,
        [row("circle", "circling"), row("left", "sideways_left"), row("right", "sideways_right")],
    )
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    for query, expected in (
        ("a ball slides to the left", "left"),
        ("a ball moving from left to right", "right"),
        ("a ball goes round in a loop", "circle"),
    ):
        hits = search(index, same, query, k=3, visual_encoder=same)
        assert hits[0].clip_id == expected, (query, [h.clip_id for h in hits])
        assert hits[0].motion == index.get(expected)["motion_label"]
        assert "motion" in hits[0].evidence


def test_the_asked_camera_move_is_read_too(tmp_path: Path) -> None:
    rows = [row("still", "bouncing", "static"), row("pan", "bouncing", "pan_left")]
    index = table(tmp_path, rows)
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    query = "a bouncing ball while the camera pans left"
    hits = search(index, same, query, k=2, visual_encoder=same)
    assert [h.clip_id for h in hits] == ["pan", "still"]


def test_clips_without_captions_are_found_by_what_they_show(tmp_path: Path) -> None:
    index = table(
        tmp_path,
        [row(f"c{i}", "static", visual=unit(i), caption="") for i in range(4)],
    )
    text = FixedEncoder(unit(7))
    hits = search(index, text, "a cube", k=4, visual_encoder=FixedEncoder(unit(2)))
    assert hits[0].clip_id == "c2"
    assert "text" not in hits[0].evidence  # an empty caption is no evidence


def test_the_shape_read_at_ingest_picks_between_uncaptioned_clips(tmp_path: Path) -> None:
    index = table(
        tmp_path, [row("cube", "towards", shape="cube"), row("cone", "towards", shape="cone")]
    )
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    for query, expected in (("a cone coming closer", "cone"), ("a box coming closer", "cube")):
        hits = search(index, same, query, k=2, visual_encoder=same)
        assert hits[0].clip_id == expected and "shape" in hits[0].evidence


def test_a_caption_that_states_another_motion_counts_against_the_clip(tmp_path: Path) -> None:
    index = table(
        tmp_path,
        [
            row("says_away", "towards", caption="a red ball moves away from the camera"),
            row("says_towards", "towards", caption="a red ball approaches the camera"),
        ],
    )
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    hits = search(index, same, "a ball coming towards us", k=2, visual_encoder=same)
    assert hits[0].clip_id == "says_towards"
    assert hits[0].evidence["caption_slots"] > hits[1].evidence.get("caption_slots", 0.0)


def test_one_hit_per_source_by_default_and_n_distinct_candidates(tmp_path: Path) -> None:
    rows = [row(f"seg{i}", "static", source="long_take") for i in range(3)]
    rows += [row(f"other{i}", "static") for i in range(3)]
    index = table(tmp_path, rows)
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))
    hits = search(index, same, "people walking outdoors", k=4, visual_encoder=same)
    sources = [index.get(h.clip_id)["source_hash"] for h in hits]
    assert len(hits) == 4 and len(set(sources)) == 4
    all_hits = search(
        index, same, "people walking outdoors", k=6, visual_encoder=same, diversity="off"
    )
    assert len(all_hits) == 6
    with pytest.raises(SearchError, match="unknown diversity"):
        search(index, same, "x", diversity="sometimes")


def test_without_reranking_the_lists_are_fused_by_rank(tmp_path: Path) -> None:
    rows = [row("a", "circling", visual=unit(0)), row("b", "static", text=unit(3), visual=unit(1))]
    index = table(tmp_path, rows)
    hits = search(
        index,
        FixedEncoder(unit(3)),
        "a ball circles",
        k=2,
        visual_encoder=FixedEncoder(unit(1)),
        rerank=False,
    )
    assert hits[0].clip_id == "b" and not hits[0].evidence


def test_scores_add_up_from_weighted_evidence() -> None:
    intent = parse_query("a cube slides to the left while the camera zooms in")
    candidate = row("x", "sideways_left", "zoom_in", caption="a cube slides to the left")
    score, parts = score_row(candidate, intent, None, None, fts_rank=1, weights=RankWeights())
    assert score == pytest.approx(sum(parts.values()))
    doubled, _ = score_row(
        candidate, intent, None, None, fts_rank=1, weights=RankWeights(motion=2.0)
    )
    assert doubled - score == pytest.approx(parts["motion"])
    assert parts["caption_slots"] > 0
    assert score_row(candidate, QueryIntent(), None, None, None)[0] == 0.0


def test_diversify_keeps_the_first_of_each_key() -> None:
    rows = [{"clip_id": c, "source_hash": s} for c, s in (("a", 1), ("b", 1), ("c", 2), ("d", 3))]
    assert [r["clip_id"] for r in diversify(rows, 2, diversity_key("source"))] == ["a", "c"]
    assert [r["clip_id"] for r in diversify(rows, 3, None)] == ["a", "b", "c"]
