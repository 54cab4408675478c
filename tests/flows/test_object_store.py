"""Clip library, depth store, a render and a DVC remote on an S3-compatible store (moto)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from story.flows.build_index import build_index
from story.flows.ingest_new import ingest_new
from story.flows.precompute_depth import precompute_depth
from story.models.text_encoder import load_text_encoder
from story.tasks.library.index import ClipIndex
from story.tasks.library.search import search
from story.tasks.object_store import (
    ObjectStoreError,
    configure_fsspec,
    get_file,
    list_files,
    put_file,
    write_bytes,
)
from story.tasks.provenance.manifest import read_manifest
from story.tasks.settings import Settings
from story.tasks.structure.depth_store import DepthStore, StructureStoreError, make_key
from tests.flows.library_fixture import SCENES, build_library, write_clip

pytestmark = pytest.mark.usefixtures("prefect_harness")

BUCKET = "studio"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields LanceDB-style storage options."""
    import boto3
    import fsspec.config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {k: fsspec.config.conf.get(k) for k in ("s3", "s3a")}
    try:
        _, port = server.get_host_and_port()
        options = {
            "aws_endpoint": f"http://127.0.0.1:{port}",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
            "allow_http": "true",
        }
        boto3.client(
            "s3",
            endpoint_url=options["aws_endpoint"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield options
    finally:
        for key, value in saved.items():
            if value is None:
                fsspec.config.conf.pop(key, None)
            else:
                fsspec.config.conf[key] = value
        server.stop()


@pytest.fixture(scope="module")
def remote_library(s3, tmp_path_factory) -> dict:
    """A tiny library (media + manifest) uploaded to s3://studio/lib/."""
    library = build_library(tmp_path_factory.mktemp("lib"), n_good=3, with_bad=False)
    for path in sorted(library.root.rglob("*")):
        if path.is_file():
            put_file(path, f"s3://{BUCKET}/lib/{path.relative_to(library.root).as_posix()}", s3)
    return {"library": library, "manifest": f"s3://{BUCKET}/lib/manifest.jsonl"}


def _objects(options: dict[str, str], prefix: str) -> list[str]:
    return [u.split(f"{BUCKET}/", 1)[1] for u in list_files(f"s3://{BUCKET}/{prefix}", (), options)]


def test_index_and_search_a_library_that_lives_in_object_storage(
    s3, remote_library, tmp_path
) -> None:
    settings = Settings(
        workspace=tmp_path / "ws",
        lancedb_uri=f"s3://{BUCKET}/lancedb",
        storage_options=s3,
        shard_size=2,
    )
    # Media and manifest are read through fsspec; build_index does not configure it itself.
    configure_fsspec(settings.storage_options)
    library = remote_library["library"]

    first = build_index(remote_library["manifest"], settings.resolved(), use_ray=False)
    assert first["rows"] == first["added"] == len(library.good)
    assert first["quarantined"] == []
    assert all(
        row.startswith("s3://")
        for row in ClipIndex(settings.lancedb, storage_options=s3).rows()["uri"]
    )
    assert any(name.startswith("lancedb/clips.lance/") for name in _objects(s3, "lancedb"))
    assert not (tmp_path / "ws" / "lancedb").exists()

    encoder = load_text_encoder("minilm", device="cpu")
    index = ClipIndex(settings.lancedb, storage_options=s3)
    for item in library.good:
        hits = search(index, encoder, item["paraphrase"], k=3)
        assert Path(hits[0].uri).name == Path(item["uri"]).name, (item["paraphrase"], hits)

    again = build_index(remote_library["manifest"], settings.resolved(), use_ray=False)
    assert again["added"] == 0
    assert again["rows"] == first["rows"]
    assert again["shards"]["run"] == 0


def test_ingest_new_takes_only_new_files_from_an_object_store_drop_folder(
    s3, remote_library, tmp_path
) -> None:
    settings = Settings(
        workspace=tmp_path / "ws",
        lancedb_uri=f"s3://{BUCKET}/lancedb-drop",
        storage_options=s3,
        shard_size=2,
    )
    drop = f"s3://{BUCKET}/drop"
    first_clip = tmp_path / "first.mp4"
    write_clip(first_clip, 7, **SCENES[1])
    put_file(first_clip, f"{drop}/snow_cube.mp4", s3)
    first = ingest_new(settings.resolved(), drop_folder=drop, use_ray=False)
    assert (first["new"], first["added"], first["rows"]) == (1, 1, 1)

    caption, _ = write_clip(tmp_path / "second.mp4", 8, **SCENES[2])
    put_file(tmp_path / "second.mp4", f"{drop}/day2/clip.mp4", s3)
    sidecar = tmp_path / "clip.json"
    sidecar.write_text(json.dumps({"caption": caption, "source": "studio"}))
    put_file(sidecar, f"{drop}/day2/clip.json", s3)
    second = ingest_new(settings.resolved(), drop_folder=drop, use_ray=False)
    assert (second["seen"], second["new"], second["added"], second["rows"]) == (2, 1, 1, 2)

    rows = ClipIndex(settings.lancedb, storage_options=s3).rows().set_index("uri")
    assert rows.loc[f"{drop}/day2/clip.mp4", "caption"] == caption
    assert rows.loc[f"{drop}/day2/clip.mp4", "source"] == "studio"
    assert rows.loc[f"{drop}/snow_cube.mp4", "caption"] == "snow cube"


def test_the_depth_store_keeps_entries_in_object_storage(s3, tmp_path) -> None:
    store = DepthStore(f"s3://{BUCKET}/depth", s3, cache=tmp_path / "cache")
    key = make_key("clip0", "tiny-depth@abc", range(0, 16, 4), (8, 8))
    depth = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    assert not store.has(key) and store.missing([key]) == [key.digest]
    with pytest.raises(StructureStoreError, match=f"s3://{BUCKET}/depth/.*no stored structure"):
        store.get(key)

    where = store.put(key, depth, {"uri": "s3://studio/lib/a.mp4"})
    assert where == f"s3://{BUCKET}/depth/{key.digest[:2]}/{key.digest}.npz"
    assert sorted(_objects(s3, "depth")) == [
        f"depth/{key.digest[:2]}/{key.digest}.json",
        f"depth/{key.digest[:2]}/{key.digest}.npz",
    ]
    elsewhere = DepthStore(f"s3://{BUCKET}/depth/", s3, cache=tmp_path / "other-cache")
    assert elsewhere.has(key) and list(elsewhere.keys()) == [key.digest]
    np.testing.assert_allclose(elsewhere.get(key), depth, atol=1e-3)
    assert (tmp_path / "other-cache" / key.digest[:2] / f"{key.digest}.npz").is_file()
    assert elsewhere.meta(key)["clip_id"] == "clip0"
    assert elsewhere.meta(key)["uri"] == "s3://studio/lib/a.mp4"

    # A damaged object with no cached copy is reported, naming it (get-or-compute redoes it).
    write_bytes(str(where), b"not a zip", s3)
    fresh = DepthStore(f"s3://{BUCKET}/depth", s3, cache=tmp_path / "third-cache")
    with pytest.raises(StructureStoreError, match=f"{where}: unreadable"):
        fresh.get(key)
    with pytest.raises(ObjectStoreError, match="no such object"):
        get_file(f"s3://{BUCKET}/depth/none.npz", tmp_path / "x.npz", s3)


def _depth_library(root: Path, s3: dict[str, str]) -> Settings:
    """Two indexed clips in a local library; depth goes to s3://studio/<root name>/."""
    library = build_library(root / "library", n_good=2, with_bad=False)
    settings = Settings(
        workspace=root / "ws", depth_store_uri=f"s3://{BUCKET}/{root.name}", storage_options=s3
    )
    build_index(str(library.manifest), settings.resolved(), use_ray=False)
    return settings


def test_precomputed_depth_lives_in_object_storage_and_reads_back_identical(s3, tmp_path) -> None:
    settings = _depth_library(tmp_path, s3)
    first = precompute_depth(settings.resolved(), use_ray=False, size=(16, 16))
    assert (first["computed"], first["cached"], first["failed"]) == (2, 0, [])
    assert first["store"] == f"s3://{BUCKET}/{tmp_path.name}"
    assert len([o for o in _objects(s3, tmp_path.name) if o.endswith(".npz")]) == 2
    assert not (tmp_path / "ws" / "depth").exists()

    again = precompute_depth(settings.resolved(), use_ray=False, size=(16, 16))
    assert (again["computed"], again["cached"]) == (0, 2)

    # The same precompute into a local folder gives the same arrays as a reader of the bucket.
    local = Settings(workspace=tmp_path / "local", lancedb_uri=settings.lancedb)
    precompute_depth(local.resolved(), use_ray=False, size=(16, 16))
    on_disk = DepthStore.from_settings(local)
    reader = DepthStore.from_settings(
        Settings(**{**settings.resolved(), "workspace": str(tmp_path / "reader")})
    )
    keys = sorted(reader.keys())
    assert keys == sorted(on_disk.keys()) and len(keys) == 2
    for key in keys:
        assert np.array_equal(reader.get(key), on_disk.get(key))
        assert reader.meta(key)["clip_id"] == on_disk.meta(key)["clip_id"]


def test_a_render_takes_its_depth_from_object_storage(s3, tmp_path) -> None:
    from PIL import Image

    from story.tasks.outputs.imaging import colorize_structure, film_strip
    from tests.flows.studio_fixture import build_studio, render

    uri = f"s3://{BUCKET}/render-depth"
    studio = build_studio(tmp_path, checkpoints=(), depth_store_uri=uri, storage_options=s3)
    first = render(studio, "ball")
    key = read_manifest(first["manifest"])["plots"][0]["depth_key"]
    store = DepthStore(uri, s3)
    assert store.has(key) and list(store.keys()) == [key]
    assert not (Path(studio.workspace) / "depth").exists()

    # A corrected depth map published to the bucket is what a render elsewhere is guided by.
    frames, height, width = store.get(key).shape
    marker = np.broadcast_to(np.linspace(-1, 1, width, dtype=np.float32), (frames, height, width))
    store.put(key, marker)
    elsewhere = Settings(**{**studio.resolved(), "workspace": str(tmp_path / "elsewhere")})
    second = render(elsewhere, str(tmp_path / "ball.yaml"))
    assert list(store.keys()) == [key], "the stored entry was used, not computed again"

    def guide(summary: dict) -> np.ndarray:
        return np.asarray(Image.open(Path(summary["folder"]) / "storyboard/plot_000_structure.png"))

    expected = film_strip(colorize_structure(marker.astype(np.float16).astype(np.float32)))
    assert np.array_equal(guide(second)[..., :3], expected)
    assert not np.array_equal(guide(first)[..., :3], expected)


def test_dvc_push_and_pull_through_an_s3_remote(s3, tmp_path, monkeypatch) -> None:
    import subprocess

    from dvc.cli import main as dvc

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    subprocess.run(["git", "init", "-q"], check=True)
    data = repo / "clips.bin"
    payload = np.random.default_rng(1).bytes(50_000)
    data.write_bytes(payload)
    commands = [
        ["init", "-q"],
        ["add", "-q", "clips.bin"],
        ["remote", "add", "-d", "store", f"s3://{BUCKET}/dvc"],
        ["remote", "modify", "store", "endpointurl", s3["aws_endpoint"]],
        ["remote", "modify", "store", "region", s3["aws_region"]],
        ["remote", "modify", "--local", "store", "access_key_id", s3["aws_access_key_id"]],
        ["remote", "modify", "--local", "store", "secret_access_key", "testing"],
        ["push", "-q"],
    ]
    for command in commands:
        assert dvc(command) == 0, command
    assert _objects(s3, "dvc"), "dvc push stored nothing in the bucket"

    data.unlink()
    for path in sorted((repo / ".dvc" / "cache").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert dvc(["pull", "-q"]) == 0
    assert data.read_bytes() == payload
