"""A table's captions as flat posting lists, searched by BM25 as `bm25.Bm25` scores them.

Each posting's term weight (f (k1 + 1) / (f + k1 (1 - b + b len / avg_len))) is precomputed, so a
query adds idf times a stored array per token; the rows of one caption are tokenized once.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from story.tasks.library.bm25 import K1, B, tokens


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
    ) -> None:
        self.vocabulary = vocabulary
        self.indptr = indptr
        self.rows = rows
        self.weights = weights
        self.count = count
        self.documents = documents
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
        weights = counts * (K1 + 1.0) / (counts + norm[rows])
        return cls(vocabulary, indptr, rows.astype(np.int32), weights, len(caption_of), documents)

    def _scratch(self) -> np.ndarray:
        """This thread's score buffer, zeroed (a fresh array per query cost ~5 ms of page faults
        at 1M rows)."""
        local = self._local
        score = getattr(local, "score", None)
        if score is None:
            score = local.score = np.zeros(self.count, np.float64)
        else:
            score.fill(0.0)
        return score

    def top(
        self, query: str, keep: Callable[[np.ndarray], np.ndarray] | None, limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` best (row, score) among the rows `keep` passes, best first, ties in table
        order (`bm25.Bm25.top`). A row matches when its score is above 0 (every term adds a
        positive amount)."""
        score = self._scratch()
        for word in tokens(query):
            token = self.vocabulary.get(word)
            if token is None:
                continue
            start, end = int(self.indptr[token]), int(self.indptr[token + 1])
            n = end - start
            idf = math.log(1.0 + (self.documents - n + 0.5) / (n + 0.5))
            _add(score, self.rows[start:end], self.weights[start:end], idf)
        candidates = None
        if keep is None and self.count > 16 * limit:
            # The limit-th best of every 16th row is a floor for the limit-th best of all rows:
            # only rows at or above it (less a float32 rounding margin) can make the cut.
            floor = np.partition(score[::16], -limit)[-limit]
            if floor > 0:
                candidates = np.flatnonzero(score >= floor * (1.0 - 1e-6))
        if candidates is None:
            candidates = np.flatnonzero(score > 0)
            if keep is not None and len(candidates):
                candidates = candidates[keep(candidates)]
        found = score[candidates].astype(np.float32)  # LanceDB's scores are float32
        return [(int(candidates[i]), float(found[i])) for i in best(-found, limit)]


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
