"""Full-text search over a small table's captions in memory, scored as LanceDB scores it.

`story index` builds LanceDB's native full-text index on `caption` with its default tokenizer
(`FTS_TOKENIZER`: "simple" words, lower case, English stemming, stop words removed, ASCII
folding). LanceDB scores a row by BM25: for every query token (counted as often as the query
repeats it) that the caption holds `f` times, idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len /
avg_len)), k1 = 1.2, b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)) over the N captioned rows,
n of them holding the token (a caption with no token at all is not counted, as LanceDB does not
count it). `Bm25` keeps every caption's tokens, made by LanceDB's own
tokenizer, and scores the same way: the scores equal LanceDB's to float precision
(`tests/tasks/library/test_bm25.py` checks it against the index). One difference, on purpose:
rows with equal scores come in table order, the way the vector lists break ties; LanceDB returns
tied rows in an order that changes with the limit asked for (a heap's), so the same query asked
for 10 or 60 rows ranked them differently.

`tokenizer()` is LanceDB's `tokenize`. In a process that has not imported LanceDB it loads only
LanceDB's native extension (~15 ms, not the ~2 s package import) and registers it under its
own name, so a later `import lancedb` uses that same module.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

K1 = 1.2
B = 0.75
# The tokenizer settings `story index` builds the full-text index with (LanceDB's defaults).
FTS_TOKENIZER: dict[str, Any] = {}
NATIVE = "lancedb._lancedb"


@functools.cache
def tokenizer() -> Callable[..., Any]:
    """LanceDB's tokenize function, without importing the lancedb package if it is not loaded."""
    native = sys.modules.get(NATIVE)
    if native is None and "lancedb" in sys.modules:
        native = sys.modules["lancedb"]
    if native is None:
        package = importlib.util.find_spec("lancedb")
        if package is None or not package.submodule_search_locations:
            raise ImportError("lancedb is not installed")
        folder = Path(next(iter(package.submodule_search_locations)))
        paths = sorted(folder.glob("_lancedb*.so")) + sorted(folder.glob("_lancedb*.pyd"))
        if not paths:
            raise ImportError(f"{folder}: LanceDB's native extension is missing")
        spec = importlib.util.spec_from_file_location(NATIVE, paths[0])
        assert spec is not None and spec.loader is not None
        native = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(native)
        sys.modules[NATIVE] = native
    return native.tokenize


def tokens(text: str) -> list[str]:
    """`text` as the full-text index sees it."""
    return [token.text for token in tokenizer()(text, **FTS_TOKENIZER)]


class Bm25:
    """The captions' tokens, searchable by BM25 (see the module docstring)."""

    def __init__(self, documents: Sequence[Sequence[str] | None]) -> None:
        """`documents[i]`: row i's caption tokens, None for a row without a caption."""
        self.count = len(documents)
        self.tokenized = [list(document) if document else None for document in documents]
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        lengths = np.zeros(self.count, np.float64)
        gathered: dict[str, tuple[list[int], list[int]]] = {}
        for row, document in enumerate(documents):
            if not document:  # no caption, or no token in it: not a document to LanceDB
                continue
            lengths[row] = len(document)
            for token, freq in Counter(document).items():
                rows, freqs = gathered.setdefault(token, ([], []))
                rows.append(row)
                freqs.append(freq)
        for token, (rows, freqs) in gathered.items():
            self.postings[token] = (np.asarray(rows, np.int64), np.asarray(freqs, np.float64))
        self.documents = sum(bool(document) for document in documents)
        mean = lengths.sum() / self.documents if self.documents else 1.0
        self.norm = K1 * (1.0 - B + B * lengths / max(mean, 1e-12))

    @classmethod
    def from_captions(cls, captions: Sequence[str | None]) -> Bm25:
        return cls([None if caption is None else tokens(caption) for caption in captions])

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Every row's score for `query` and which rows hold at least one query token."""
        score = np.zeros(self.count, np.float64)
        matched = np.zeros(self.count, bool)
        for token in tokens(query):
            posting = self.postings.get(token)
            if posting is None:
                continue
            rows, freqs = posting
            idf = math.log(1.0 + (self.documents - len(rows) + 0.5) / (len(rows) + 0.5))
            score[rows] += idf * freqs * (K1 + 1.0) / (freqs + self.norm[rows])
            matched[rows] = True
        return score, matched

    def top(self, query: str, keep: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """The `limit` best (row, score) among `keep`, best first, ties in table order."""
        score, matched = self.scores(query)
        candidates = np.flatnonzero(matched & keep)
        found = score[candidates].astype(np.float32)  # LanceDB's scores are float32
        order = np.argsort(-found, kind="stable")[:limit]
        return [(int(candidates[i]), float(found[i])) for i in order]
