"""The distinct-caption corpus: distinct strings, truth the parser agrees with, train seeds only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from story.tasks.evaluation.search_corpus import (
    SLOT_NAMES,
    build_corpus,
    distinct_captions,
    record_batches,
    row_batch,
)
from story.tasks.library.index import clip_schema


def test_captions_are_distinct_with_truth() -> None:
    captions, truths = distinct_captions(300)
    assert len(set(captions)) == 300 == len(truths)
    assert all(set(SLOT_NAMES) <= set(t) for t in truths)


def test_corpus_rows_are_regenerable_and_shaped_like_the_table(tmp_path: Path) -> None:
    def embed(texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    corpus = build_corpus(200, tmp_path, embed, log=lambda _: None)
    again = build_corpus(200, tmp_path, embed, log=lambda _: None)
    assert again.captions == corpus.captions and corpus.sigma > 0
    ids, vectors = row_batch(corpus, 0, 450)
    assert list(ids[:3]) == [0, 1, 2] and ids[250] == 50
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(row_batch(corpus, 0, 450)[1], vectors)
    truth = corpus.truth_of(int(ids[0]))
    parsed_motion = corpus.slots[0, SLOT_NAMES.index("motion")]
    assert parsed_motion < 0 or corpus.labels["motion"][parsed_motion] in (
        truth["motion"],
        "sideways",
    )
    schema = clip_schema(384)
    batch = next(record_batches(corpus, 450, schema))
    assert batch.num_rows == 450 and batch.schema == schema
    assert batch.column("caption")[250].as_py() == corpus.captions[50]
