"""An inverted file over exact vectors (IVF-flat), for a large clip table held in memory.

Spherical k-means (`partitions_for(rows)`: sqrt(rows) partitions, trained on a seeded sample)
splits the unit vectors into partitions stored contiguously; a query scores every centroid and
reads the `nprobes` nearest partitions' vectors, one matrix-vector product each. No product
quantisation, so within the probed partitions the distances are exact.

A table whose float32 vectors would take more than 1/HALF_SHARE of the machine's memory holds
them in half precision (10M caption vectors: 7.7 GB instead of 15): a probe scores them with
torch's half-precision product (half the bytes read, ~2x faster than float32 on this CPU), and
the rows near the list's cut are scored again in float32 from the stored vectors
(`Ivf.refine`), so a list's order is float32's; what remains is the rounding of the stored
vectors (relative 2^-11 an element), which the search evaluation measures.

A half-precision table also keeps a screen: every vector projected on the SCREEN_DIMS
directions that carry most of a sample's energy (its top right singular vectors: the
projection that keeps dot products best), in half precision, a quarter of the bytes at 96 of
384 dims. A probe then reads the screen, not the vectors, and a list rescores its
SCREEN_FACTOR x `keep` best screened rows in float32 from the stored vectors; what the screen
drops (a row of the list's true best that ranks below that many rows on the screen) is what
the search evaluation's recall against exact search measures. Exact search reads the vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SAMPLE = 65_536  # k-means training rows
KMEANS_ITERATIONS = 12
CHUNK = 32_768  # rows per matrix product when assigning partitions
# sqrt(partitions) (32 of 1,000 at 1M rows, 57 of 3,162 at 10M): the validation rule's picks
# were 32 at 1M and 64 at 10M (`story eval search --in-memory`), where a fixed share (1 in 32)
# would read 99 at 10M: half again the time, for recall beyond the rule; at least MIN_PROBES.
MIN_PROBES = 8
HALF_SHARE = 4
SCREEN_DIMS = 96
SCREEN_FACTOR = 10
IVF_ARRAYS = ("centroids", "offsets", "positions", "vectors", "slot")
SCREEN_ARRAYS = ("basis", "screen")
HALF_MARGIN = 2e-3
"""Rows within this cosine of a half-precision list's cut are scored again in float32: a
half-precision product is off by at most ~5e-4 (its result rounded to 11 bits, the query to
11 bits), so twice it either side keeps every row that float32 would rank above the cut."""


def half_precision(rows: int, dim: int, memory: int | None = None) -> bool:
    """Whether `rows` vectors of `dim` are held in half precision: when in float32 they would
    take more than 1/HALF_SHARE of `memory` (default: this machine's)."""
    if memory is None:
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
            return False
    return rows * dim * 4 > memory / HALF_SHARE


def dot(block: np.ndarray, query: np.ndarray) -> np.ndarray:
    """`block @ query` as float32; a half-precision block through torch (numpy has no fast
    half-precision product)."""
    if block.dtype != np.float16:
        return block @ query
    import torch

    with torch.inference_mode():
        found = torch.mv(torch.from_numpy(block), torch.from_numpy(query.astype(np.float16)))
        return found.float().numpy()


def screen_basis(sample: np.ndarray, dims: int) -> np.ndarray:
    """(dim, dims) orthonormal directions keeping the most of `sample`'s energy: its top right
    singular vectors, uncentred (dot products, not distances from a mean, are kept)."""
    _, _, vt = np.linalg.svd(np.asarray(sample, np.float64), full_matrices=False)
    return np.ascontiguousarray(vt[: min(dims, len(vt))].T, np.float32)


def partitions_for(rows: int) -> int:
    """IVF partitions for `rows` vectors: sqrt(rows), so a partition holds about as many rows as
    there are partitions (1,000 of 1,000 at 1M rows)."""
    return max(1, round(math.sqrt(max(rows, 1))))


def default_probes(partitions: int) -> int:
    """Partitions a query reads by default: sqrt(partitions), at least MIN_PROBES."""
    return min(partitions, max(MIN_PROBES, math.ceil(math.sqrt(partitions))))


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
    `vectors` (-1: the row has no vector); `screen` (optional) each vector projected on
    `basis`, in the same order."""

    centroids: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    vectors: np.ndarray
    slot: np.ndarray
    basis: np.ndarray | None = field(default=None)
    screen: np.ndarray | None = field(default=None)

    @classmethod
    def build(
        cls,
        unit: np.ndarray,
        valid: np.ndarray,
        partitions: int,
        seed: int = 0,
        allocate: Callable[..., np.ndarray] | None = None,
        dtype: type = np.float32,
        screen_dims: int = 0,
    ) -> Ivf:
        """From unit vectors in table order (`valid`: which rows have one; `unit` may be a
        memory map). `allocate(name, shape, dtype)` gives the partition-ordered copies their
        storage (a memory map for a table larger than memory; default: an array); `dtype`:
        float32, or float16 for half precision; `screen_dims`: keep a half-precision screen of
        that many dims (0: none)."""
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
        allocate = allocate or (lambda name, shape, dtype: np.empty(shape, dtype))
        vectors = allocate("vectors", shape, dtype)
        for start in range(0, len(positions), CHUNK):
            vectors[start : start + CHUNK] = unit[positions[start : start + CHUNK]]
        basis = screen = None
        if screen_dims and len(sample):
            basis = screen_basis(sample, screen_dims)
            shape = (len(positions), basis.shape[1])
            screen = allocate("screen", shape, np.float16)
            for start in range(0, len(positions), CHUNK):
                block = np.asarray(vectors[start : start + CHUNK], np.float32)
                screen[start : start + CHUNK] = block @ basis
        return cls(centroids, offsets.astype(np.int64), positions, vectors, slot, basis, screen)

    @property
    def partitions(self) -> int:
        return len(self.centroids)

    @property
    def half(self) -> bool:
        """Whether the vectors are held in half precision."""
        return self.vectors.dtype == np.float16

    @property
    def screened(self) -> bool:
        """Whether probes read a screen (`SCREEN_DIMS` dims) instead of the vectors."""
        return self.screen is not None

    def vector(self, slot: int) -> np.ndarray:
        """One stored vector as float32."""
        return np.asarray(self.vectors[slot], np.float32)

    def refine(
        self,
        slots: np.ndarray,
        sims: np.ndarray,
        query: np.ndarray,
        keep: int,
        screened: bool = False,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """(which, sims): which of `slots` can be among the `keep` best and their sims scored
        again in float32 from the stored vectors, or (None: all of them, `sims`) in float32.
        `screened`: `sims` are the screen's (`Probe.screened`), and the SCREEN_FACTOR x `keep`
        best of them are rescored; otherwise, in half precision, the rows within HALF_MARGIN of
        the cut."""
        if screened:
            rank, margin = SCREEN_FACTOR * keep, 0.0
        elif self.half:
            rank, margin = keep, HALF_MARGIN
        else:
            return None, sims
        if len(sims) <= rank:
            return None, np.asarray(self.vectors[slots], np.float32) @ query
        near = np.flatnonzero(sims >= np.partition(sims, -rank)[-rank] - margin)
        return near, np.asarray(self.vectors[slots[near]], np.float32) @ query

    def probe(self, query: np.ndarray, nprobes: int) -> Probe:
        """Every vector in the `nprobes` partitions whose centroid is nearest the unit `query`,
        with its cosine similarity, or its screen's estimate of it when the inverted file keeps
        a screen (all partitions: exact search, which reads the vectors)."""
        if nprobes >= self.partitions:
            everything = np.array([[0, len(self.vectors)]], np.int64)
            return Probe(np.arange(len(self.vectors)), dot(self.vectors, query), False, everything)
        near = np.argpartition(-(self.centroids @ query), nprobes - 1)[:nprobes]
        near.sort()
        source, projected, screened = self.vectors, query, False
        if self.screen is not None and self.basis is not None:
            source, projected, screened = self.screen, query @ self.basis, True
        ranges = np.stack([self.offsets[near], self.offsets[near + 1]], 1)
        ranges = ranges[ranges[:, 1] > ranges[:, 0]]
        if not len(ranges):
            return Probe(np.zeros(0, np.int64), np.zeros(0, np.float32), screened, ranges)
        slots = np.concatenate([np.arange(start, end) for start, end in ranges])
        sims = np.concatenate([dot(source[start:end], projected) for start, end in ranges])
        return Probe(slots, sims, screened, ranges)


@dataclass(frozen=True)
class Probe:
    """What a probe read: `slots` into the inverted file's vectors, their similarities to the
    query (`screened`: the screen's estimates, for `Ivf.refine`), and the same slots as
    `ranges` of [start, end) (one per partition read, in `slots`' order)."""

    slots: np.ndarray
    sims: np.ndarray
    screened: bool
    ranges: np.ndarray

    def gather(self, array: np.ndarray) -> np.ndarray:
        """`array[slots]` for an array in the inverted file's order, as slices (a probe's
        partitions are contiguous: copying them is several times faster than an index)."""
        if len(self.ranges) == 1:
            start, end = self.ranges[0]
            return np.asarray(array[start:end])
        return np.concatenate([array[start:end] for start, end in self.ranges])
