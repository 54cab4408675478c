"""Search by text over a small real clip table embedded with the bundled MiniLM."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from story.models.text_encoder import MiniLMTextEncoder, load_text_encoder
from story.tasks.library.index import ClipIndex, ivf_pq_config
from story.tasks.library.ingest import caption_slots
from story.tasks.library.search import SearchError, SearchFilters, reciprocal_rank_fusion, search

CAPTIONS = [
    "a red ball bouncing on green grass",
    "a blue cube sliding sideways across the snow",
    "a yellow cone spinning slowly on a wooden floor",
    "two people walking along a beach at sunset",
    "a dog running after a frisbee in a park",
    "a car driving down a wet city street at night",
    "a close-up of hands kneading bread dough",
    "waves crashing against rocks on a stormy coast",
    "a cat sleeping on a sunny windowsill",
    "an aeroplane taking off from a runway",
    "children playing football in a school yard",
    "a chef slicing onions in a busy kitchen",
    "a hot air balloon drifting over hills",
    "fireworks exploding over a river",
    "a cyclist riding uphill on a mountain road",
    "rain falling on a quiet pond with ripples",
    "a train arriving at a crowded station",
    "a horse galloping through a dusty field",
    "an old man reading a newspaper on a bench",
    "a candle flame flickering in the dark",
    "snow falling on a pine forest",
    "a skateboarder doing a trick on a ramp",
    "a green sphere rolling towards the camera on sand",
    "a striped box moving away from the camera over tiles",
    "the camera pans across a desert with dunes",
    "a woman dancing in a studio with mirrors",
    "bees collecting pollen from purple flowers",
    "a sailing boat crossing a calm lake",
    "a toddler stacking colourful wooden blocks",
    "smoke rising from a chimney on a cold morning",
]
# (query paraphrase, index of the caption it describes)
PARAPHRASES = [
    ("a scarlet ball hops up and down on a grassy field", 0),
    ("somebody stirs and presses dough for a loaf with their hands", 6),
    ("a kitty napping by the window in the sunshine", 8),
    ("a jet leaving the ground at the airport", 9),
    ("a biker climbing a steep road in the mountains", 14),
]


@pytest.fixture(scope="module")
def encoder() -> MiniLMTextEncoder:
    return load_text_encoder("minilm", device="cpu")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, encoder: MiniLMTextEncoder) -> ClipIndex:
    """The rows ingest would write for these captions (caption vector and parsed slots)."""
    index = ClipIndex(str(tmp_path_factory.mktemp("search") / "db"), text_dim=encoder.dim)
    vectors = encoder.embed_sentences(CAPTIONS)
    now = datetime.now(UTC)
    rows = []
    for i, (caption, vector) in enumerate(zip(CAPTIONS, vectors, strict=True)):
        width, height = (64, 64) if i % 3 else (128, 72)
        duration = 1.0 + i % 5
        rows.append(
            {
                "clip_id": f"c{i:02d}",
                "uri": f"/media/c{i:02d}.mp4",
                "start": 0.0,
                "end": duration,
                "duration": duration,
                "fps": 8.0,
                "width": width,
                "height": height,
                "aspect": width / height,
                "frames": int(8 * duration),
                "frame_indices": [0, 8],
                "source": "o'reilly stock" if i % 2 else "miniworld",
                "license": "CC0",
                "caption": caption,
                "text_vector": vector.tolist(),
                **caption_slots(caption),
                "shard": "s0",
                "ingested_at": now,
            }
        )
    index.add(rows)
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return index


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_a_paraphrased_caption_finds_its_clip(
    library: ClipIndex, encoder: MiniLMTextEncoder, mode: str
) -> None:
    for query, target in PARAPHRASES:
        hits = search(library, encoder, query, k=3, mode=mode)
        assert hits[0].clip_id == f"c{target:02d}", (query, [h.caption for h in hits])
        assert hits[0].caption == CAPTIONS[target]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_queries_embedded_in_one_batch_find_the_same_clips(
    library: ClipIndex, encoder: MiniLMTextEncoder
) -> None:
    queries = [query for query, _ in PARAPHRASES]
    vectors = encoder.embed_sentences(queries)
    for query, vector in zip(queries, vectors, strict=True):
        alone = search(library, encoder, query, k=5)
        batched = search(library, encoder, query, k=5, text_vector=vector)
        assert [h.clip_id for h in batched] == [h.clip_id for h in alone]
        assert [h.score for h in batched] == pytest.approx([h.score for h in alone])


def test_an_exact_word_is_found_by_full_text(
    library: ClipIndex, encoder: MiniLMTextEncoder
) -> None:
    hits = search(library, encoder, "frisbee", k=5, mode="fts")
    assert [h.clip_id for h in hits] == ["c04"]
    hybrid = search(library, encoder, "frisbee", k=5)
    assert hybrid[0].clip_id == "c04" and len(hybrid) == 5


def test_filters_exclude_rows(library: ClipIndex, encoder: MiniLMTextEncoder) -> None:
    wide = SearchFilters(min_aspect=1.5)
    hits = search(library, encoder, "a red ball bouncing on green grass", k=30, filters=wide)
    assert hits and all(h.clip_id in {f"c{i:02d}" for i in range(0, 30, 3)} for h in hits)
    assert hits[0].clip_id == "c00"
    short = SearchFilters(max_duration=2.0, source="o'reilly stock")
    for mode in ("hybrid", "vector", "fts"):
        hits = search(library, encoder, "a dog running in a park", k=30, filters=short, mode=mode)
        assert all(h.duration <= 2.0 and h.source == "o'reilly stock" for h in hits)
        assert "c04" not in {h.clip_id for h in hits}
    assert search(library, encoder, "ball", filters=SearchFilters(source="nowhere")) == []


def test_hybrid_search_without_matching_words_still_ranks_by_meaning(
    library: ClipIndex, encoder: MiniLMTextEncoder
) -> None:
    assert search(library, encoder, "feline", k=3, mode="fts") == []
    hits = search(library, encoder, "feline", k=3)
    assert hits[0].clip_id == "c08"


def test_bad_queries_are_rejected_clearly(library: ClipIndex, encoder: MiniLMTextEncoder) -> None:
    with pytest.raises(SearchError, match="query is empty"):
        search(library, encoder, "   ")
    with pytest.raises(SearchError, match="unknown search mode"):
        search(library, encoder, "ball", mode="semantic")
    with pytest.raises(SearchError, match="k must be"):
        search(library, encoder, "ball", k=0)
    with pytest.raises(SearchError, match="min_duration .* above max_duration"):
        search(library, encoder, "ball", filters=SearchFilters(min_duration=3, max_duration=1))


def test_search_of_an_empty_library_returns_nothing(
    tmp_path: Path, encoder: MiniLMTextEncoder
) -> None:
    assert search(ClipIndex(str(tmp_path / "empty")), encoder, "a red ball") == []


def test_fusion_puts_clips_both_lists_agree_on_first() -> None:
    def row(cid: str) -> dict:
        return {"clip_id": cid, "uri": cid, "start": 0, "end": 1, "caption": cid, "duration": 1}

    fused = reciprocal_rank_fusion([[row("a"), row("b")], [row("c"), row("b")]], k=3)
    assert [h.clip_id for h in fused][0] == "b"
    assert fused[0].score == pytest.approx(2 / 62)


class _OneHotTextTower:
    """A visual encoder's text side that maps every query to one clip's visual vector."""

    dim = 4
    name = "one-hot"

    def __init__(self, target: int) -> None:
        self.target = target

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.eye(4, dtype=np.float32)[self.target], (len(texts), 1))


def test_a_visual_encoder_adds_the_visual_column_to_the_fusion(
    tmp_path: Path, encoder: MiniLMTextEncoder
) -> None:
    captions = ["a red ball bouncing on grass", "a city street at night", "a quiet pond", "a cat"]
    index = ClipIndex(str(tmp_path / "db"), text_dim=encoder.dim, visual_dim=4)
    rows = [
        {
            "clip_id": f"v{i}",
            "uri": f"/media/v{i}.mp4",
            "start": 0.0,
            "end": 1.0,
            "duration": 1.0,
            "caption": caption,
            "text_vector": vector.tolist(),
            "visual_vector": np.eye(4, dtype=np.float32)[i].tolist(),
        }
        for i, (caption, vector) in enumerate(
            zip(captions, encoder.embed_sentences(captions), strict=True)
        )
    ]
    index.add(rows)
    query = "a red ball bouncing on grass"
    text_only = [h.clip_id for h in search(index, encoder, query, k=4, mode="vector")]
    last = int(text_only[-1][1:])
    tower = _OneHotTextTower(last)
    fused = [
        h.clip_id for h in search(index, encoder, query, k=4, mode="vector", visual_encoder=tower)
    ]
    assert text_only[0] == "v0" and set(fused) == set(text_only)
    assert fused.index(f"v{last}") < text_only.index(f"v{last}")


def test_default_nprobes_grows_with_the_library():
    from story.tasks.library.search import MIN_NPROBES, default_nprobes

    small = default_nprobes(1_000, 384)
    million = default_nprobes(1_000_000, 384)
    ten_million = default_nprobes(10_000_000, 384)
    hundred_million = default_nprobes(100_000_000, 384)
    assert small == million == MIN_NPROBES
    assert hundred_million > ten_million >= million
    for rows, probes in ((10_000_000, ten_million), (100_000_000, hundred_million)):
        assert probes * 40 >= ivf_pq_config(rows, 384).num_partitions


def test_each_list_row_carries_the_tables_columns_read_once_and_no_row_id(
    library: ClipIndex, encoder: MiniLMTextEncoder
) -> None:
    from story.tasks.library.search import search_rows

    for mode in ("hybrid", "vector", "fts"):
        rows = search_rows(library, encoder, "a red ball bouncing on green grass", k=5, mode=mode)
        assert rows, mode
        for row in rows:
            assert "_rowid" not in row, mode
            assert row["caption"] == CAPTIONS[int(row["clip_id"][1:])], mode
            assert row["uri"].endswith(f"{row['clip_id']}.mp4"), mode
