"""Media paths in the clip table: stored relative to the library inside its project, so a copied
or moved project (another clone, a `dvc pull` elsewhere) opens its own media."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from story.tasks.library.index import ClipIndex
from story.tasks.library.media import probe
from story.tasks.library.search import search
from story.tasks.outputs.video_io import write_mp4
from tests.tasks.library.test_index import make_rows

DIM = 384


class _Encoder:
    """A fixed query vector: the test is about paths, not ranking."""

    dim = DIM

    def embed_sentences(self, sentences: list[str]) -> np.ndarray:
        return np.ones((len(sentences), DIM), np.float32) / np.sqrt(DIM)


def _project(root: Path) -> Path:
    (root / ".dvc").mkdir(parents=True)
    media = root / "datasets" / "media"
    media.mkdir(parents=True)
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(3):
        write_mp4(media / f"clip-{i}.mp4", frames + 40 * i, 8)
    rows = make_rows(np.ones((3, DIM), np.float32) / np.sqrt(DIM))
    for i, row in enumerate(rows):
        row["uri"] = str(media / f"clip-{i}.mp4")
    rows.append({**make_rows(np.ones((1, DIM), np.float32), prefix="far")[0], "uri": "/mnt/x.mp4"})
    rows.append({**make_rows(np.ones((1, DIM), np.float32), prefix="s3")[0], "uri": "s3://b/y.mp4"})
    ClipIndex(str(root / "datasets" / "index"), text_dim=DIM).add(rows)
    return root


def test_a_moved_project_opens_its_own_media(tmp_path: Path) -> None:
    first = _project(tmp_path / "first")
    stored = ClipIndex(str(first / "datasets" / "index"), text_dim=DIM).table.to_arrow()
    ids, uris = stored.column("clip_id").to_pylist(), stored.column("uri").to_pylist()
    by_id = dict(zip(ids, uris, strict=True))
    assert by_id["clip-00000"] == "../media/clip-0.mp4"
    assert by_id["far-00000"] == "/mnt/x.mp4" and by_id["s3-00000"] == "s3://b/y.mp4"

    moved = tmp_path / "elsewhere" / "second"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    index = ClipIndex(str(moved / "datasets" / "index"), text_dim=DIM)
    local = [u for u in index.rows()["uri"] if not u.startswith(("s3://", "/mnt/"))]
    assert sorted(local) == [str(moved / "datasets" / "media" / f"clip-{i}.mp4") for i in range(3)]
    assert index.get("clip-00001")["uri"] == str(moved / "datasets" / "media" / "clip-1.mp4")
    hits = [h for h in search(index, _Encoder(), "anything", k=5, mode="vector")]
    opened = [h.uri for h in hits if h.clip_id.startswith("clip-")]
    assert opened and all(probe(uri).frames == 8 for uri in opened)
    assert {h.uri for h in hits if h.clip_id.startswith("far")} <= {"/mnt/x.mp4"}
