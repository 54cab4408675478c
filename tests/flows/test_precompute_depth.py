"""Flow `precompute_depth`: library and query modes, cache hits, a broken clip among good ones."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from story.models.depth import TinyDepthConfig, TinyDepthNet
from story.models.t2v import random_tiny
from story.tasks.settings import Settings
from story.tasks.structure.depth_store import DepthStore

CAPTIONS = [
    "a red ball bouncing on green grass",
    "a blue box sliding across the snow",
    "a yellow cone turning in the desert",
]


def write_clip(path: Path, colour: tuple[int, int, int], frames: int = 10, size: int = 32) -> None:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = np.stack([ys * 4, xs * 3, 40 + 0 * ys], -1)
            img[(xs - 8 - t) ** 2 + (ys - 16) ** 2 < 30] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), "rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def library(settings: Settings, tmp_path: Path) -> Settings:
    """Three decodable clips and one truncated file in a clip table, plus a tiny depth net."""
    from story.models.text_encoder import load_text_encoder
    from story.tasks.library.index import ClipIndex

    media = tmp_path / "media"
    media.mkdir()
    uris = []
    for i, colour in enumerate([(250, 30, 30), (30, 60, 250), (250, 230, 40)]):
        write_clip(media / f"clip{i}.mp4", colour)
        uris.append(media / f"clip{i}.mp4")
    broken = media / "broken.mp4"
    broken.write_bytes(uris[0].read_bytes()[:200])
    captions = [*CAPTIONS, "a broken file"]
    vectors = load_text_encoder("minilm", device="cpu").embed_sentences(captions)
    rows = [
        {
            "clip_id": f"clip-{i}" if i < 3 else "clip-broken",
            "uri": str(uri),
            "frame_indices": [0, 3, 6],
            "caption": caption,
            "text_vector": vector.tolist(),
            "start": 0.0,
            "end": 1.25,
            "duration": 1.25,
        }
        for i, (uri, caption, vector) in enumerate(
            zip([*uris, broken], captions, vectors, strict=True)
        )
    ]
    index = ClipIndex(settings.lancedb, settings.clips_table)
    index.add(rows)
    index.ensure_indices(settings.ivf_pq_min_rows)
    torch.manual_seed(0)
    checkpoints = tmp_path / "checkpoints"
    TinyDepthNet(TinyDepthConfig(channels=(8, 16), groups=4, train_size=32)).save(
        checkpoints / "depth-tiny"
    )
    random_tiny(frames=4, size=16, seed=0).save_pretrained(checkpoints / "t2v-tiny")
    return settings.model_copy(update={"checkpoints": checkpoints})


def test_library_run_on_ray_then_everything_cached(prefect_harness, ray_local, library: Settings):
    from story.flows.precompute_depth import precompute_depth

    first = precompute_depth(library.resolved(), size=(16, 16), workers=2, use_ray=True)
    second = precompute_depth(library.resolved(), size=(16, 16), use_ray=False)

    assert first["computed"] == 3 and first["cached"] == 0
    assert first["failed"] == [
        {"clip_id": "clip-broken", "reason": "truncated", "detail": first["failed"][0]["detail"]}
    ]
    assert "broken.mp4" in first["failed"][0]["detail"]
    assert second["computed"] == 0 and second["cached"] == 3
    assert [f["clip_id"] for f in second["failed"]] == ["clip-broken"]
    store = DepthStore(library.workspace / "depth")
    keys = list(store.keys())
    maps = [store.get(key) for key in keys]
    assert len(maps) == 3
    assert all(m.shape == (3, 16, 16) and m.min() >= -1 and m.max() <= 1 for m in maps)


def test_query_top_k_and_cli_json(prefect_harness, library: Settings, capfd):
    from typer.testing import CliRunner

    from story.flows.cli import app
    from story.flows.precompute_depth import precompute_depth

    summary = precompute_depth(
        library.resolved(), query="red ball on grass", top_k=1, model="edges", use_ray=False
    )
    assert summary["clips"] == 1 and summary["computed"] == 1
    store = DepthStore(library.workspace / "depth")
    keys = list(store.keys())
    assert [store.meta(k)["clip_id"] for k in keys] == ["clip-0"]

    env = {
        "STORY_WORKSPACE": str(library.workspace),
        "STORY_CHECKPOINTS": str(library.checkpoints),
    }
    result = CliRunner().invoke(
        app,
        [
            "depth",
            "--query",
            "red ball on grass",
            "-k",
            "1",
            "--model",
            "edges",
            "--no-ray",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(capfd.readouterr().out)
    assert doc["computed"] == 0 and doc["cached"] == 1 and doc["failed"] == []


def test_maps_are_stored_at_the_synthesis_checkpoint_size(prefect_harness, library: Settings):
    from story.flows.precompute_depth import precompute_depth
    from story.tasks.render.jobs import RenderError

    summary = precompute_depth(library.resolved(), model="edges", use_ray=False)
    assert summary["size"] == [16, 16]
    store = DepthStore(library.workspace / "depth")
    keys = list(store.keys())
    assert {store.get(k).shape for k in keys} == {(3, 16, 16)}

    with pytest.raises(RenderError, match="checkpoint 'nope': no model at .*nope"):
        precompute_depth(library.resolved(), model="edges", checkpoint="nope", use_ray=False)
