"""Train / validation / sealed test: the miniature world's seed ranges, defined here and only here.

Every scene, query, concept shot and long shot the project draws from the world is named by a
seed. The three splits are disjoint seed ranges; inside a split, each purpose (synthesis scenes,
retrieval queries, ...) has its own block, so adding queries never shifts the scenes.

- train: anything a model learns from, and the sample library;
- validation: every choice (checkpoint step, learning rate, fusion weight, nprobes, ...);
- test: sealed, scored once per shipped model (`story eval ... --split test`).

Code that learns from seeds calls `require(seed, TRAIN)` (or `TRAIN, VALIDATION` for selection),
so a seed from the sealed range fails loudly instead of leaking into training.
"""

from __future__ import annotations

from collections.abc import Iterable

from story.tasks.errors import StoryError

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
SPLITS: tuple[str, ...] = (TRAIN, VALIDATION, TEST)

SPLIT_SIZE = 1_000_000_000
"""Each split spans this many seeds: train [0, 1e9), validation [1e9, 2e9), test [2e9, 3e9)."""

PURPOSE_BLOCK = 10_000_000
"""Seeds per purpose inside a split."""

PURPOSES: tuple[str, ...] = (
    "scenes",  # synthesis: a scene to render from its depth
    "queries",  # retrieval: a plot query and the scene it asks for
    "concepts",  # character shots
    "longshots",  # clip-by-clip continuation
    "search",  # the distinct-caption corpus for search at scale
    "judge",  # the judge network's own clips
    "library",  # clips of a library built for evaluation
    "images",  # single frames / character sheets
)


class SplitError(StoryError, ValueError):
    """A seed was used outside the split its use allows (e.g. a sealed test seed in training)."""


def split_of(seed: int) -> str:
    """The split a seed belongs to."""
    if not 0 <= seed < len(SPLITS) * SPLIT_SIZE:
        raise SplitError(f"seed {seed} lies outside every split [0, {len(SPLITS) * SPLIT_SIZE})")
    return SPLITS[seed // SPLIT_SIZE]


def base(split: str, purpose: str) -> int:
    """The first seed of `purpose` in `split`."""
    if split not in SPLITS:
        raise SplitError(f"unknown split {split!r}: one of {SPLITS}")
    if purpose not in PURPOSES:
        raise SplitError(f"unknown purpose {purpose!r}: one of {PURPOSES}")
    return SPLITS.index(split) * SPLIT_SIZE + PURPOSES.index(purpose) * PURPOSE_BLOCK


def seeds(split: str, purpose: str, count: int, start: int = 0) -> list[int]:
    """`count` consecutive seeds of `purpose` in `split`, from offset `start`."""
    if count < 0 or start < 0 or start + count > PURPOSE_BLOCK:
        raise SplitError(
            f"{count} seeds from offset {start} do not fit a purpose block of {PURPOSE_BLOCK}"
        )
    first = base(split, purpose) + start
    return list(range(first, first + count))


def require(seed: int, *allowed: str) -> int:
    """`seed`, after checking it lies in one of the `allowed` splits; else a SplitError."""
    found = split_of(seed)
    if found not in allowed:
        raise SplitError(
            f"seed {seed} is in the {found} split, but only {', '.join(allowed)} may be used here"
        )
    return seed


def require_all(seeds_used: Iterable[int], *allowed: str) -> None:
    """`require` for every seed of an iterable."""
    for seed in seeds_used:
        require(seed, *allowed)
