"""A clip library of one split's world clips, indexed and searched with the product's own code.

The production-path evaluation retrieves from it exactly as a render does (`ClipIndex` + hybrid
`search`, the caption embedder the library is indexed with). Clips are named by their world seed
(`uri` miniworld://<seed>), so their frames, depth and masks are re-rendered on demand at any
size instead of being decoded; the table is built once per (split, clips) and reused.
"""

from __future__ import annotations

from pathlib import Path

from story.models.text_encoder import TextEncoder
from story.tasks.errors import StoryError
from story.tasks.library.index import TEXT_VECTOR, ClipIndex
from story.tasks.library.search import search
from story.tasks.world import miniworld, splits

SCHEME = "miniworld://"
CAPTION_VARIANTS = 4


def clip_seed(uri: str) -> int:
    """The world seed of a library uri (miniworld://<seed>)."""
    if not uri.startswith(SCHEME):
        raise StoryError(f"{uri}: not a miniature-world clip of an evaluation library")
    return int(uri.removeprefix(SCHEME))


class EvalLibrary:
    """`clips` library clips of `split` in a LanceDB folder; `retrieve` is the product's search."""

    def __init__(self, folder: str | Path, split: str, clips: int, encoder: TextEncoder) -> None:
        self.folder = Path(folder)
        self.split, self.clips, self.encoder = split, clips, encoder
        self.seeds = splits.seeds(split, "library", clips)
        self.index = ClipIndex(str(self.folder), table=f"{split}_{clips}", text_dim=encoder.dim)
        if self.index.count() != clips:
            self._build()

    def _build(self) -> None:
        specs = [miniworld.sample_scene(splits.require(s, self.split)) for s in self.seeds]
        captions = [miniworld.make_caption(spec, spec.seed % CAPTION_VARIANTS) for spec in specs]
        vectors = self.encoder.embed_sentences(captions)
        rows = [
            {
                "clip_id": f"world-{spec.seed}",
                "uri": f"{SCHEME}{spec.seed}",
                "start": 0.0,
                "end": spec.frames / spec.fps,
                "duration": spec.frames / spec.fps,
                "fps": spec.fps,
                "width": spec.width,
                "height": spec.height,
                "aspect": spec.width / spec.height,
                "frames": spec.frames,
                "source": f"miniworld-{self.split}",
                "license": "generated",
                "caption": caption,
                TEXT_VECTOR: vector.astype("float32").tolist(),
            }
            for spec, caption, vector in zip(specs, captions, vectors, strict=True)
        ]
        self.index.add(rows)
        self.index.ensure_indices(ivf_pq_min_rows=max(256, 10 * self.clips))

    def retrieve(self, query: str) -> tuple[int, str]:
        """The top hit of the product's hybrid search: (world seed, its caption)."""
        hits = search(self.index, self.encoder, query, k=1, mode="hybrid")
        if not hits:
            raise StoryError(f"{self.folder}: the evaluation library found nothing for {query!r}")
        return clip_seed(hits[0].uri), hits[0].caption
