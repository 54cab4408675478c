"""Motion-aware re-ranking of fused search candidates, and one hit per source.

Every candidate from the vector, full-text and slot lists gets one score, a weighted sum of
evidence: the caption vector's and the video-text vector's cosine to the query, whether full-text
search found it, the log-probability that the clip shows the motion and camera move the query
asks (measured from its frames at ingest, `story.tasks.library.motion`), and whether the slots
its caption states (shape, motion, camera, ground; parsed at ingest) agree with the query's.
A clip without a caption is scored on what it shows. The weights are chosen on the validation
split (`bench/bench_retrieval.py`), never on test.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from story.tasks.library.motion import CAMERA_LABELS, MOTION_LABELS
from story.tasks.library.query_intent import QueryIntent, coarse_motion, motion_matches
from story.tasks.world.miniworld import SHAPES

FLOOR = 1e-3


@dataclass(frozen=True)
class RankWeights:
    """How much each piece of evidence counts (defaults chosen on validation queries by
    bench/bench_retrieval.py). With the shape tagger and motion classifier in the library, the
    caption and video-text cosines added nothing on validation and were set to 0: the vectors
    still choose the candidates and order the ties."""

    text: float = 0.0
    visual: float = 0.0
    fulltext: float = 0.5
    motion: float = 1.0
    camera: float = 1.0
    shape: float = 1.0
    caption_slots: float = 2.0
    ground: float = 0.5

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_WEIGHTS = RankWeights()
UNIT_WEIGHTS = RankWeights(**{name: 1.0 for name in RankWeights.__dataclass_fields__})


@functools.cache
def _positions(labels: tuple[str, ...], wanted: frozenset[str]) -> tuple[int, ...]:
    return tuple(i for i, label in enumerate(labels) if label in wanted)


def _log_prob(
    probs: Sequence[float] | None, labels: Sequence[str], wanted: frozenset[str]
) -> float:
    if probs is None or len(probs) != len(labels):
        return 0.0
    p = sum(float(probs[i]) for i in _positions(tuple(labels), wanted))
    return math.log(max(p, FLOOR))


@functools.cache
def _wanted_motion(asked: str) -> frozenset[str]:
    return frozenset(m for m in MOTION_LABELS if motion_matches(asked, m))


def _slot_agreement(intent: QueryIntent, row: dict[str, Any]) -> tuple[float, float]:
    """(+1 / -1 per agreeing / clashing caption slot of shape, motion, camera; same for ground)."""
    total = 0.0
    if intent.shape and row.get("caption_shape"):
        total += 1.0 if row["caption_shape"] == intent.shape else -1.0
    stated = row.get("caption_motion")
    if intent.motion and stated:
        if motion_matches(intent.motion, stated):
            total += 1.0
        elif coarse_motion(stated) != coarse_motion(intent.motion):
            total -= 1.0
    if intent.camera and row.get("caption_camera"):
        total += 1.0 if row["caption_camera"] == intent.camera else -1.0
    ground = 0.0
    if intent.background and row.get("caption_ground"):
        ground = 1.0 if row["caption_ground"] == intent.background else -1.0
    return total, ground


def _cosine(vector: Any, query: np.ndarray | None) -> float | None:
    if vector is None or query is None:
        return None
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.sqrt(v.dot(v)))  # np.linalg.norm's arithmetic, without its checks
    return float(v @ query) / norm if norm > 0 else None


def score_row(
    row: dict[str, Any],
    intent: QueryIntent,
    text_query: np.ndarray | None,
    visual_query: np.ndarray | None,
    fts_rank: int | None,
    weights: RankWeights = DEFAULT_WEIGHTS,
) -> tuple[float, dict[str, float]]:
    """A candidate's score and the evidence behind it (returned for display and tuning)."""
    parts: dict[str, float] = {}
    if row.get("caption"):
        cos = _cosine(row.get("text_vector"), text_query)
        if cos is not None:
            parts["text"] = weights.text * cos
    cos = _cosine(row.get("visual_vector"), visual_query)
    if cos is not None:
        parts["visual"] = weights.visual * cos
    if fts_rank is not None:
        parts["fulltext"] = weights.fulltext * 10.0 / (10.0 + fts_rank)
    if intent.motion:
        parts["motion"] = weights.motion * _log_prob(
            row.get("motion_probs"), MOTION_LABELS, _wanted_motion(intent.motion)
        )
    if intent.camera:
        parts["camera"] = weights.camera * _log_prob(
            row.get("camera_probs"), CAMERA_LABELS, frozenset((intent.camera,))
        )
    if intent.shape and row.get("shape_probs") is not None:
        parts["shape"] = weights.shape * _log_prob(
            row["shape_probs"], SHAPES, frozenset((intent.shape,))
        )
    slots, ground = _slot_agreement(intent, row)
    if slots:
        parts["caption_slots"] = weights.caption_slots * slots
    if ground:
        parts["ground"] = weights.ground * ground
    return float(sum(parts.values())), parts


def diversify(
    ranked: Sequence[dict[str, Any]], k: int, key: Callable[[dict[str, Any]], Any] | None
) -> list[dict[str, Any]]:
    """The first k rows, skipping any whose key an earlier row already had (None: no limit)."""
    if key is None:
        return list(ranked[:k])
    seen: set[Any] = set()
    out = []
    for row in ranked:
        value = key(row)
        if value in seen:
            continue
        seen.add(value)
        out.append(row)
        if len(out) == k:
            break
    return out


DIVERSITY = ("source", "shot", "off")


def diversity_key(mode: str) -> Callable[[dict[str, Any]], Any] | None:
    """One hit per source file ("source"), per source shot ("shot"), or no limit ("off")."""
    if mode == "off":
        return None
    if mode == "shot":
        return lambda row: row.get("source_shot") or row["clip_id"]
    if mode == "source":
        return lambda row: row.get("source_hash") or row.get("uri") or row["clip_id"]
    raise ValueError(f"unknown diversity {mode!r}: one of {', '.join(DIVERSITY)}")
