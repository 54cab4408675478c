"""The distinct-caption corpus for search at library scale, with each caption's scene truth.

Captions of train-split "search" scenes in several wordings (the grammar's variants, the plot
query a story would derive, partial descriptions) are collected until `count` DISTINCT strings
exist; each keeps its scene's truth (shape, motion with direction, camera, ground), the slots the
product's own parser reads from it, and its MiniLM vector. A table of N rows repeats the distinct
captions with per-row noise on the vector (calibrated to the cosine between two paraphrases of
one scene, measured on the corpus), so at 1M / 10M rows a query's top 10 is judged by scene:
the right shape, motion and camera, whichever copy or wording came back. Queries come from the
validation / test "queries" scenes, never from the corpus.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from story.tasks.world import miniworld, splits

BATCH = 50_000
SLOT_NAMES = ("shape", "motion", "camera", "background")


@dataclass
class Corpus:
    """Distinct captions, their truth and slots (index arrays), and unit vectors (float32)."""

    captions: list[str]
    truth: np.ndarray
    slots: np.ndarray
    vectors: np.ndarray
    labels: dict[str, list[str]]
    sigma: float
    seconds: dict[str, float]

    def truth_of(self, distinct: int) -> dict[str, str]:
        return {n: self.labels[n][self.truth[distinct, i]] for i, n in enumerate(SLOT_NAMES)}


def _labels() -> dict[str, list[str]]:
    from story.tasks.library.query_intent import CAMERAS, MOTIONS

    return {
        "shape": list(miniworld.SHAPES),
        "motion": [*MOTIONS, "sideways"],
        "camera": list(CAMERAS),
        "background": list(miniworld.BACKGROUNDS),
    }


def _wordings(seed: int, rng: random.Random) -> Iterator[tuple[str, dict[str, str]]]:
    """Several captions of one scene and its truth."""
    from story.tasks.evaluation.retrieval_library import world_truth
    from story.tasks.script.query_prompt import derive_query_prompt
    from story.tasks.training.video_text_data import partial_text

    spec = miniworld.sample_scene(seed)
    truth = world_truth(spec)
    described = miniworld.describe(spec)
    for variant in range(4):
        caption = miniworld.make_caption(spec, variant)
        yield caption, truth
        if variant < 2:
            yield derive_query_prompt(caption, {})[0], truth
    yield partial_text(described, rng)[0], truth


def distinct_captions(count: int) -> tuple[list[str], list[dict[str, str]]]:
    """`count` distinct captions of train-split "search" scenes, with their truth."""
    rng = random.Random(0)
    found: dict[str, dict[str, str]] = {}
    offset = 0
    while len(found) < count:
        seeds = splits.seeds(splits.TRAIN, "search", 1000, offset)
        splits.require_all(seeds, splits.TRAIN)
        for seed in seeds:
            for caption, truth in _wordings(seed, rng):
                found.setdefault(caption, truth)
        offset += 1000
    captions = list(found)[:count]
    return captions, [found[c] for c in captions]


def noise_sigma(paraphrase_cos: float, dim: int) -> float:
    """Noise std per dimension so cos(v, normalise(v + noise)) is about `paraphrase_cos`."""
    return float(np.sqrt((1.0 / paraphrase_cos**2 - 1.0) / dim))


def build_corpus(
    count: int, cache: Path, embed: Callable[[list[str]], np.ndarray], log=print
) -> Corpus:
    """The corpus of `count` distinct captions, embedded once and cached in `cache`."""
    from story.tasks.library.query_intent import parse_query

    labels = _labels()
    path = cache / f"search_corpus_{count}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return Corpus(
                captions=[str(c) for c in data["captions"]],
                truth=data["truth"],
                slots=data["slots"],
                vectors=data["vectors"].astype(np.float32),
                labels=labels,
                sigma=float(data["sigma"]),
                seconds=dict(
                    zip(
                        (str(k) for k in data["timing_keys"]),
                        (float(v) for v in data["timing_values"]),
                        strict=True,
                    )
                ),
            )
    t0 = time.perf_counter()
    captions, truths = distinct_captions(count)
    truth = np.array([[labels[n].index(t[n]) for n in SLOT_NAMES] for t in truths], np.int16)
    slots = np.full((count, len(SLOT_NAMES)), -1, np.int16)
    for i, caption in enumerate(captions):
        intent = parse_query(caption)
        for j, name in enumerate(SLOT_NAMES):
            value = getattr(intent, name)
            if value is not None:
                slots[i, j] = labels[name].index(value)
    made = time.perf_counter() - t0
    log(f"{count} distinct captions in {made:.0f} s; embedding")
    t0 = time.perf_counter()
    vectors = np.zeros((count, 384), np.float32)
    for start in range(0, count, 4096):
        vectors[start : start + 4096] = embed(captions[start : start + 4096])
        log(f"embedded {min(start + 4096, count)}/{count}")
    embedded = time.perf_counter() - t0
    sigma = noise_sigma(_paraphrase_cos(captions, truth, vectors), vectors.shape[1])
    seconds = {"captions": round(made, 1), "embed": round(embedded, 1)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        captions=np.array(captions),
        truth=truth,
        slots=slots,
        vectors=vectors.astype(np.float16),
        sigma=sigma,
        timing_keys=np.array(list(seconds)),
        timing_values=np.array(list(seconds.values())),
    )
    return Corpus(captions, truth, slots, vectors, labels, sigma, seconds)


def _paraphrase_cos(captions: list[str], truth: np.ndarray, vectors: np.ndarray) -> float:
    """Median cosine between two different captions of the same scene attributes."""
    rng = np.random.default_rng(0)
    keys = [tuple(row) for row in truth]
    by_key: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    pairs = []
    for members in by_key.values():
        if len(members) >= 2:
            a, b = rng.choice(members, 2, replace=False)
            pairs.append(float(vectors[a] @ vectors[b]))
    return float(np.median(pairs)) if pairs else 0.8


def row_batch(
    corpus: Corpus, batch: int, rows: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows [batch*BATCH, ...): their distinct-caption ids and unit vectors (regenerable)."""
    rng = np.random.default_rng([seed, batch])
    start = batch * BATCH
    n = min(BATCH, rows - start)
    ids = (np.arange(start, start + n) % len(corpus.captions)).astype(np.int64)
    noise = rng.normal(0.0, corpus.sigma, (n, corpus.vectors.shape[1])).astype(np.float32)
    vectors = corpus.vectors[ids] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, vectors


def record_batches(
    corpus: Corpus, rows: int, schema: pa.Schema, seed: int = 0
) -> Iterator[pa.RecordBatch]:
    """The table's rows a batch at a time, shaped like ingest's (no media behind them)."""
    now = datetime.now(UTC)
    slot_columns = ("caption_shape", "caption_motion", "caption_camera", "caption_ground")
    for batch in range(-(-rows // BATCH)):
        ids, vectors = row_batch(corpus, batch, rows, seed)
        n, offset = len(ids), batch * BATCH
        row_ids = [f"{offset + i:09d}" for i in range(n)]
        columns: dict[str, pa.Array] = {
            "clip_id": pa.array(row_ids),
            "uri": pa.array([f"s3://library/{r}.mp4" for r in row_ids]),
            "source_hash": pa.array(row_ids),
            "start": pa.array(np.zeros(n)),
            "end": pa.array(np.full(n, 2.0)),
            "duration": pa.array(np.full(n, 2.0)),
            "caption": pa.array([corpus.captions[i] for i in ids]),
            "text_vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), vectors.shape[1]
            ),
            "shard": pa.array([f"b{batch:04d}"] * n),
            "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
        for j, (column, name) in enumerate(zip(slot_columns, SLOT_NAMES, strict=True)):
            values = corpus.slots[ids, j]
            columns[column] = pa.array(
                [corpus.labels[name][v] if v >= 0 else None for v in values], pa.string()
            )
        arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
