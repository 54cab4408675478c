"""An inverted file over exact vectors (IVF-flat), for a large clip table held in memory.

Spherical k-means (`partitions_for(rows)`: sqrt(rows) partitions, trained on a seeded sample)
splits the unit vectors into partitions stored contiguously; a query scores every centroid and
reads the `nprobes` nearest partitions' vectors, one matrix-vector product each. No product
quantisation, so within the probed partitions the distances are exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLE = 65_536  # k-means training rows
KMEANS_ITERATIONS = 12
CHUNK = 32_768  # rows per matrix product when assigning partitions
# 1 in 32 partitions: chosen on the validation queries at 1M rows (`story eval search
# --in-memory`); never fewer than MIN_PROBES.
PROBE_SHARE = 32
MIN_PROBES = 8


def partitions_for(rows: int) -> int:
    """IVF partitions for `rows` vectors: sqrt(rows), so a partition holds about as many rows as
    there are partitions (1,000 of 1,000 at 1M rows)."""
    return max(1, round(math.sqrt(max(rows, 1))))


def default_probes(partitions: int) -> int:
    """Partitions a query reads by default: 1 in PROBE_SHARE, at least MIN_PROBES."""
    return min(partitions, max(MIN_PROBES, math.ceil(partitions / PROBE_SHARE)))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's most similar centroid (rows and centroids unit length), in chunks."""
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), CHUNK):
        part = np.asarray(vectors[start : start + CHUNK], np.float32)
        out[start : start + len(part)] = np.argmax(part @ centroids.T, axis=1)
    return out


def kmeans(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` unit centroids of unit vectors `sample` by spherical k-means (an empty cluster is
    re-seeded with a random sample row)."""
    k = min(k, len(sample))
    centroids = sample[rng.choice(len(sample), k, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        assign = _nearest(sample, centroids)
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=k)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.add.reduceat(sample[order], starts[counts > 0], axis=0)
        centroids[counts > 0] = unit_rows(sums)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            centroids[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
    return centroids.astype(np.float32)


@dataclass
class Ivf:
    """One vector column as an inverted file: `vectors[offsets[p]:offsets[p+1]]` are partition
    p's unit vectors, `positions` their table positions, `slot[position]` a row's index into
    `vectors` (-1: the row has no vector)."""

    centroids: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    vectors: np.ndarray
    slot: np.ndarray

    @classmethod
    def build(
        cls,
        unit: np.ndarray,
        valid: np.ndarray,
        partitions: int,
        seed: int = 0,
        allocate: Callable[[str, tuple[int, ...]], np.ndarray] | None = None,
    ) -> Ivf:
        """From unit vectors in table order (`valid`: which rows have one; `unit` may be a
        memory map). `allocate(name, shape)` gives the partition-ordered copy its storage (a
        memory map for a table larger than memory; default: an array)."""
        rng = np.random.default_rng(seed)
        rows = np.flatnonzero(valid)
        picked = np.sort(rng.choice(len(rows), min(len(rows), SAMPLE), replace=False))
        sample = np.asarray(unit[rows[picked]], np.float32)
        centroids = kmeans(sample, min(partitions, max(len(rows), 1)), rng)
        assign = _nearest(unit, centroids)[rows]
        order = np.argsort(assign, kind="stable")  # table order inside each partition
        offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=len(centroids)))])
        slot = np.full(len(valid), -1, np.int64)
        slot[rows[order]] = np.arange(len(order))
        positions = rows[order]
        shape = (len(positions), unit.shape[1])
        vectors = allocate("vectors", shape) if allocate else np.empty(shape, np.float32)
        for start in range(0, len(positions), CHUNK):
            vectors[start : start + CHUNK] = unit[positions[start : start + CHUNK]]
        return cls(centroids, offsets.astype(np.int64), positions, vectors, slot)

    @property
    def partitions(self) -> int:
        return len(self.centroids)

    def probe(self, query: np.ndarray, nprobes: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots, cosine similarities) of every vector in the `nprobes` partitions whose
        centroid is nearest the unit `query` (all partitions: exact search)."""
        if nprobes >= self.partitions:
            return np.arange(len(self.vectors)), self.vectors @ query
        near = np.argpartition(-(self.centroids @ query), nprobes - 1)[:nprobes]
        near.sort()
        slots, sims = [], []
        for p in near:
            start, end = int(self.offsets[p]), int(self.offsets[p + 1])
            if end > start:
                slots.append(np.arange(start, end))
                sims.append(self.vectors[start:end] @ query)
        if not slots:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(slots), np.concatenate(sims)
