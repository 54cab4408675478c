"""A table's captions as flat posting lists, searched by BM25 as `bm25.Bm25` scores them.

Each posting's term weight (f (k1 + 1) / (f + k1 (1 - b + b len / avg_len))) is precomputed, so a
query adds idf times a stored array per token; the rows of one caption are tokenized once.

A query is answered one of two ways, with the same rows and the same scores to the bit: a
blocked scan of its terms' posting lists (`_scan`), or, where bounds from the common tokens'
bitmaps leave few rows that can make the cut, those rows alone (`_pruned`: at 10M rows of a
generated library's long captions, a query's 10-34M postings are 70-80 ms to scan).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from story.tasks.library.bm25 import K1, B, tokens

BLOCK = 1 << 17
"""Rows scored at a time: 1 MB of float64 scores, inside a core's L2 cache (fastest of 32k-1M
rows at 10M rows on the search evaluation's corpus)."""
QUANTUM = 4
"""The bitmap sums count idf in quarters (rounded up)."""
GROUPS = 8
"""Rows are bounded in GROUPS groups of similar length (`length_groups`)."""
CHUNK_WORDS = 1 << 14
"""The bounds are summed 16,384 words (a million rows) at a time: the slices of a query's few
dozen bitmaps and their partial sums stay in cache (2.4x faster at 10M rows than whole
bitmaps)."""
DENSE_SHARE = 128
"""A token in at least 1/DENSE_SHARE of the rows also keeps bitmaps of them: count / 8 bytes a
count level, at most 1.33x its posting list's 12 bytes a posting (most tokens have one level)."""


class Postings:
    """The captions' full-text index as flat posting lists, scored as `bm25.Bm25` scores."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        indptr: np.ndarray,
        rows: np.ndarray,
        weights: np.ndarray,
        count: int,
        documents: int,
        max_weight: np.ndarray,
        dense: np.ndarray,
        levels: np.ndarray,
        bitmaps: np.ndarray,
        norm: np.ndarray,
        groups: np.ndarray,
        group_weight: np.ndarray,
    ) -> None:
        """`max_weight`, `dense`, `levels`, `bitmaps`: as `dense_lists` gives them; `norm`:
        each row's k1 (1 - b + b len / avg_len); `groups`, `group_weight`: as
        `length_groups` gives them."""
        self.vocabulary = vocabulary
        self.indptr = indptr
        self.rows = rows
        self.weights = weights
        self.count = count
        self.documents = documents
        self.max_weight = max_weight
        self.dense = dense
        self.levels = levels
        self.bitmaps = bitmaps
        self.norm = norm
        self.groups = groups
        self.group_weight = group_weight
        # token -> (its first bitmap, one past its last)
        self._bitmap_of = {
            int(token): (int(levels[i]), int(levels[i + 1])) for i, token in enumerate(dense)
        }
        self.block = BLOCK
        self._local = threading.local()

    @classmethod
    def from_captions(cls, captions: Any) -> Postings:
        """From an Arrow string column (nulls: rows without a caption); each distinct caption is
        tokenized once."""
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(as_array(captions))
        distinct = encoded.dictionary.to_pylist()
        caption_of = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
        vocabulary: dict[str, int] = {}
        token_ids: list[int] = []
        freqs: list[int] = []
        per_caption = np.zeros(len(distinct) + 1, np.int64)  # the last entry: no caption
        length = np.zeros(len(distinct) + 1, np.float64)
        for i, text in enumerate(distinct):
            words = tokens(text)
            length[i] = len(words)
            counted = Counter(words)
            per_caption[i] = len(counted)
            for word, freq in counted.items():
                token_ids.append(vocabulary.setdefault(word, len(vocabulary)))
                freqs.append(freq)
        caption_of[caption_of < 0] = len(distinct)
        starts = np.concatenate([[0], np.cumsum(per_caption)[:-1]])
        lengths = length[caption_of]
        documents = int((lengths > 0).sum())
        mean = lengths.sum() / documents if documents else 1.0
        norm = K1 * (1.0 - B + B * lengths / max(mean, 1e-12))
        n_row = per_caption[caption_of]
        total = int(n_row.sum())
        # int32 throughout while it fits: 10M rows of ten tokens each are 100M postings.
        small = np.int32 if total < 2**31 and len(caption_of) < 2**31 else np.int64
        row_of = np.repeat(np.arange(len(caption_of), dtype=small), n_row)
        at = np.repeat((starts[caption_of] - (np.cumsum(n_row) - n_row)).astype(small), n_row)
        at += np.arange(total, dtype=small)  # each posting's index into its caption's tokens
        tid = np.asarray(token_ids, small)[at] if total else np.zeros(0, small)
        counts = np.asarray(freqs, np.float64)[at] if total else np.zeros(0, np.float64)
        order = np.argsort(tid, kind="stable")  # rows stay in table order within a token
        rows = row_of[order]
        counts = counts[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(tid, minlength=len(vocabulary)))])
        weights = term_weight(counts, norm[rows])
        rows = rows.astype(np.int32)
        dense = dense_lists(indptr, rows, weights, counts, len(caption_of))
        groups = length_groups(norm, lengths > 0)
        return cls(
            vocabulary, indptr, rows, weights, len(caption_of), documents, *dense, norm, *groups
        )

    def _scratch(self) -> np.ndarray:
        """This thread's score buffer (a fresh array per query cost ~5 ms of page faults at 1M
        rows); `_scan` zeroes each block before it adds to it."""
        local = self._local
        score = getattr(local, "score", None)
        if score is None:
            score = local.score = np.zeros(self.count, np.float64)
        return score

    def top(
        self, query: str, keep: Callable[[np.ndarray], np.ndarray] | None, limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` best (row, score) among the rows `keep` passes, best first, ties in table
        order (`bm25.Bm25.top`). A row matches when its score is above 0 (every term adds a
        positive amount)."""
        terms = self._terms(query)
        if not terms:
            return []
        found = self._pruned(terms, keep, limit)
        if found is None:
            found = self._scan(terms, keep, limit, 0, -(-self.count // self.block))
        rows, scores = found
        scores = scores.astype(np.float32)  # LanceDB's scores are float32
        return [(int(rows[i]), float(scores[i])) for i in best(-scores, limit)]

    def _terms(self, query: str) -> list[tuple[int, int, int, float]]:
        """(token, start, end, idf) of every query token in the index, in query order."""
        terms = []
        for word in tokens(query):
            token = self.vocabulary.get(word)
            if token is None:
                continue
            start, end = int(self.indptr[token]), int(self.indptr[token + 1])
            n = end - start
            terms.append(
                (token, start, end, math.log(1.0 + (self.documents - n + 0.5) / (n + 0.5)))
            )
        return terms

    def _scan(
        self,
        terms: list[tuple[int, int, int, float]],
        keep: Callable[[np.ndarray], np.ndarray] | None,
        limit: int,
        first_block: int,
        end_block: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and float64 scores that can be among the `limit` best of blocks
        [first_block, end_block), every posting read.

        The rows are scored BLOCK at a time, each term's postings in the block added to a block
        of the score buffer that stays in cache (at 10M rows a term's list is otherwise a stream
        through an 80 MB buffer, 2x slower); each row's terms are added in query order, as
        `bm25.Bm25` adds them, so the scores are the same to the bit. The best `limit` found so
        far set a floor: a later block passes on only rows at or above it (less a float32
        rounding margin)."""
        score = self._scratch()
        block = self.block
        edges = np.arange(first_block, end_block + 1) * block
        bounds = [
            start + np.searchsorted(self.rows[start:end], edges) for _, start, end, _ in terms
        ]
        found: list[tuple[np.ndarray, np.ndarray]] = []
        have, floor = 0, 0.0
        for b in range(end_block - first_block):
            first = int(edges[b])
            part = score[first : first + block]
            part.fill(0.0)
            for (_, _, _, idf), at in zip(terms, bounds, strict=True):
                start, end = int(at[b]), int(at[b + 1])
                if end > start:
                    _add(score, self.rows[start:end], self.weights[start:end], idf)
            hit = np.flatnonzero(part >= floor * (1.0 - 1e-6) if floor > 0 else part > 0)
            if keep is not None and len(hit):
                hit = hit[keep(hit + first)]
            if not len(hit):
                continue
            found.append((hit + first, part[hit].copy()))
            have += len(hit)
            if have >= limit and (floor == 0 or have >= 4 * limit):
                rows = np.concatenate([r for r, _ in found])
                scores = np.concatenate([s for _, s in found])
                floor = max(floor, float(np.partition(scores, -limit)[-limit]))
                near = scores >= floor * (1.0 - 1e-6)
                found, have = [(rows[near], scores[near])], int(near.sum())
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return np.concatenate([r for r, _ in found]), np.concatenate([s for _, s in found])

    def _pruned(
        self,
        terms: list[tuple[int, int, int, float]],
        keep: Callable[[np.ndarray], np.ndarray] | None,
        limit: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The same rows and scores as `_scan` over every block, reading few postings, or None
        where that would not pay.

        The floor: the exact scores of the rows holding the most of the highest-bound terms (an
        AND of their bitmaps that still holds `limit` rows); the `limit`-th best of all rows is
        at least its `limit`-th best. A term counted tf times in a row of length norm n weighs
        tf (k1 + 1) / (tf + n) <= tf x w1(n), w1(n) = (k1 + 1) / (1 + n). So a row scores at
        most w1(n) x S, S the sum of idf x tf over its dense terms, plus every sparse term's
        bound (idf x the largest weight in its list), and a row whose bound is below the floor
        cannot make the cut. S is summed for every row at once from the dense terms' bitmaps
        (one a count level), 64 rows a machine word: each idf, rounded up to quarters, added
        bit-sliced, CHUNK_WORDS at a time; then compared, per group of rows of similar length
        (`groups`), with the floor over the group's largest w1. Only the rows that pass are
        scored (`_exact`). A long query of common words (a generated library's captions) reads
        a few dozen bitmaps instead of tens of millions of postings."""
        if self.count < 2 * self.block or not len(self.groups):
            return None
        dense = [term for term in terms if term[0] in self._bitmap_of]
        if len(dense) < 2:
            return None
        by_bound = sorted(dense, key=lambda term: -term[3] * float(self.max_weight[term[0]]))
        both = self.bitmaps[self._bitmap_of[by_bound[0][0]][0]]
        for token, _, _, _ in by_bound[1:]:
            narrower = both & self.bitmaps[self._bitmap_of[token][0]]
            if int(np.bitwise_count(narrower).sum()) < limit:
                break
            both = narrower
        sample = _set_rows(both, self.count)[: 64 * limit]
        if keep is not None and len(sample):
            sample = sample[keep(sample)]
        if len(sample) < limit:
            return None
        scores = self._exact(terms, sample)
        floor = float(np.partition(scores, -limit)[-limit]) * (1.0 - 1e-6)
        sparse = sum(
            idf * float(self.max_weight[token])
            for token, _, _, idf in terms
            if token not in self._bitmap_of
        )
        columns: list[list[np.ndarray]] = [[] for _ in range(64)]
        for token, _, _, idf in dense:
            unit = math.ceil(QUANTUM * idf)
            first, end = self._bitmap_of[token]
            for bit in range(unit.bit_length()):
                if unit >> bit & 1:
                    columns[bit].extend(self.bitmaps[first:end])
        needs = [math.ceil(QUANTUM * (floor - sparse) / weight) for weight in self.group_weight]
        words = self.bitmaps.shape[1]
        passed = np.zeros(words, np.uint64)
        for start in range(0, words, CHUNK_WORDS):  # a slice of every bitmap stays in cache
            part = slice(start, start + CHUNK_WORDS)
            planes = _bit_sum([[bitmap[part] for bitmap in column] for column in columns])
            for group, need in zip(self.groups, needs, strict=True):
                if need <= 0:
                    passed[part] |= group[part]
                else:
                    passed[part] |= group[part] & _at_least(planes, need)
        rows = _set_rows(passed, self.count)
        if len(rows) * 16 > self.count:  # binary searches for a sixteenth of the rows: scan
            return None
        if keep is not None and len(rows):
            rows = rows[keep(rows)]
        scores = self._exact(terms, rows)
        hit = scores > 0
        return rows[hit], scores[hit]

    def _exact(self, terms: list[tuple[int, int, int, float]], rows: np.ndarray) -> np.ndarray:
        """The scores of `rows` (sorted), as `_scan` computes them, each term's weight added in
        query order. A dense term's count in a row is read from its bitmaps (one a count level)
        and its weight computed as the stored one was (the same arithmetic, so the same bits);
        a sparse term's weight is found by binary search in its list."""
        scores = np.zeros(len(rows), np.float64)
        norm = self.norm[rows]
        needles = rows.astype(self.rows.dtype)  # as the lists' (else each list is cast)
        word, bit = rows >> 6, (rows & 63).astype(np.uint64)
        one = np.uint64(1)
        for token, start, end, idf in terms:
            levels = self._bitmap_of.get(token)
            if levels is not None:
                first, end_level = levels
                held = np.flatnonzero((self.bitmaps[first][word] >> bit) & one)
                counts = np.ones(len(held), np.float64)
                for level in range(first + 1, end_level):
                    more = (self.bitmaps[level][word[held]] >> bit[held]) & one
                    counts += more.astype(np.float64)
                scores[held] = scores[held] + term_weight(counts, norm[held]) * idf
                continue
            listed = self.rows[start:end]
            found = np.minimum(np.searchsorted(listed, needles), len(listed) - 1)
            held = np.flatnonzero(listed[found] == needles)
            scores[held] = scores[held] + self.weights[start + found[held]] * idf
        return scores


def _bit_sum(columns: list[list[np.ndarray]]) -> list[np.ndarray | None]:
    """Per-row sums, bit-sliced: each bitmap in `columns[j]` adds 2^j to the rows it holds;
    plane j of the result holds bit j of every row's sum (None: zero). Each column is reduced
    by full and half adders (five and two word operations; carries go to the next column)."""
    columns = [list(column) for column in columns]
    while columns and not columns[-1]:
        columns.pop()
    planes: list[np.ndarray | None] = []
    j = 0
    while j < len(columns):
        items = columns[j]
        while len(items) > 1:
            if j + 1 == len(columns):
                columns.append([])
            if len(items) >= 3:
                a, b, c = items.pop(), items.pop(), items.pop()
                ab = a ^ b
                items.append(ab ^ c)
                columns[j + 1].append((a & b) | (c & ab))
            else:
                a, b = items.pop(), items.pop()
                items.append(a ^ b)
                columns[j + 1].append(a & b)
        planes.append(items[0] if items else None)
        j += 1
    return planes


def _at_least(planes: list[np.ndarray | None], need: int) -> np.ndarray:
    """The bitmap of rows whose bit-sliced sum (`_bit_sum`) is at least `need` (> 0), compared
    from the top bit down."""
    template = next(plane for plane in planes if plane is not None)
    if need >= 1 << len(planes):
        return np.zeros_like(template)
    above = np.zeros_like(template)
    equal = np.full_like(template, np.uint64(2**64 - 1))
    for bit in reversed(range(len(planes))):
        plane = planes[bit]
        if need >> bit & 1:
            if plane is None:
                equal[:] = 0
            else:
                equal &= plane
        elif plane is not None:
            above |= equal & plane
    return above | equal


def _set_rows(bitmap: np.ndarray, count: int) -> np.ndarray:
    """The rows whose bit is set (row r: bit r % 64 of word r // 64), ascending: the lowest set
    bit of every word still holding one, peeled off a round at a time (a round per bit of the
    fullest word, not 64 per word)."""
    words = np.flatnonzero(bitmap)
    values = bitmap[words]
    found = []
    while len(words):
        lowest = values & (~values + np.uint64(1))
        found.append(words * 64 + np.frexp(lowest.astype(np.float64))[1] - 1)
        values = values ^ lowest
        more = values != 0
        words, values = words[more], values[more]
    rows = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return rows[rows < count]


def term_weight(counts: Any, norm: np.ndarray) -> np.ndarray:
    """A term's BM25 weight in rows of `norm` (k1 (1 - b + b len / avg_len)) where it occurs
    `counts` times: one expression for the stored weights and for those `_exact` and
    `length_groups` compute again, so both give the same bits."""
    return counts * (K1 + 1.0) / (counts + norm)


def _bitmap(rows: np.ndarray, words: int) -> np.ndarray:
    """`rows` as a bitmap of `words` 64-bit words (row r: bit r % 64 of word r // 64)."""
    mask = np.zeros(words * 64, bool)
    mask[rows] = True
    return np.packbits(mask, bitorder="little").view(np.uint64)


def length_groups(norm: np.ndarray, captioned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The captioned rows in GROUPS bitmaps by w1 = (k1 + 1) / (1 + norm), in geometric ranges
    from the smallest w1 to the largest, and each group's largest w1 (the bound `_pruned`
    divides by, so within a group it is at most (largest / smallest)^(1 / GROUPS) loose)."""
    words = -(-len(norm) // 64)
    if not captioned.any():
        return np.zeros((0, words), np.uint64), np.zeros(0, np.float64)
    weight = term_weight(1.0, norm)
    low, high = float(weight[captioned].min()), float(weight[captioned].max())
    edges = low * (high / low) ** (np.arange(1, GROUPS) / GROUPS)
    group = np.searchsorted(edges, weight, side="right")
    bitmaps, bounds = [], []
    for g in range(GROUPS):
        mask = captioned & (group == g)
        if mask.any():
            bitmaps.append(_bitmap(np.flatnonzero(mask), words))
            bounds.append(float(weight[mask].max()))
    return np.stack(bitmaps), np.asarray(bounds, np.float64)


def dense_lists(
    indptr: np.ndarray, rows: np.ndarray, weights: np.ndarray, counts: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per token its largest weight; the tokens in at least 1/DENSE_SHARE of the rows; and
    their rows as bitmaps (row r: bit r % 64 of 64-bit word r // 64), one per count level:
    dense token i's bitmaps are `bitmaps[levels[i]:levels[i + 1]]`, the k-th holding the rows
    where it occurs at least k + 1 times."""
    lengths = np.diff(indptr)
    max_weight = np.zeros(len(lengths), np.float64)
    if len(weights):
        nonempty = lengths > 0
        max_weight[nonempty] = np.maximum.reduceat(weights, indptr[:-1][nonempty])
    dense = np.flatnonzero(lengths * DENSE_SHARE >= max(count, 1)).astype(np.int32)
    words = -(-count // 64)
    levels = [0]
    bitmaps = []
    for token in dense:
        start, end = indptr[token], indptr[token + 1]
        listed, times = rows[start:end], counts[start:end]
        for level in range(1, int(times.max()) + 1):
            bitmaps.append(_bitmap(listed[times >= level], words))
        levels.append(len(bitmaps))
    stacked = np.stack(bitmaps) if bitmaps else np.zeros((0, words), np.uint64)
    return max_weight, dense, np.asarray(levels, np.int64), stacked


def _add(score: np.ndarray, rows: np.ndarray, weights: np.ndarray, idf: float) -> None:
    """score[rows] += idf * weights, in one C loop when SciPy's sparse kernel is there."""
    if _csc_matvec is not None and rows.dtype == np.int32 and weights.dtype == np.float64:
        bounds = np.array([0, len(rows)], np.int32)
        _csc_matvec(len(score), 1, bounds, rows, weights, np.array([idf]), score)
    else:
        score[rows] += idf * np.asarray(weights)


try:  # the sparse matrix-vector kernel (a column times a scalar, added in place)
    from scipy.sparse._sparsetools import (  # type: ignore[import-untyped]
        csc_matvec as _csc_matvec,
    )
except ImportError:  # pragma: no cover - SciPy's private module moved: numpy does the same
    _csc_matvec = None


def best(cost: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the `limit` lowest costs, lowest first, ties by index (stable)."""
    if len(cost) > limit:
        cut = np.partition(cost, limit - 1)[limit - 1]
        near = np.flatnonzero(cost <= cut)
        return near[np.argsort(cost[near], kind="stable")][:limit]
    return np.argsort(cost, kind="stable")


def as_array(column: Any) -> Any:
    """An Arrow array from an array or a chunked column."""
    return column.combine_chunks() if hasattr(column, "combine_chunks") else column
