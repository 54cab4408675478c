"""Clip library, depth entry and DVC remote on an S3-compatible store (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from story.flows.build_index import build_index
from story.flows.ingest_new import ingest_new
from story.models.text_encoder import load_text_encoder
from story.settings import Settings
from story.tasks.depth_store import DepthStore, make_key
from story.tasks.index import ClipIndex
from story.tasks.object_store import (
    ObjectStoreError,
    configure_fsspec,
    exists,
    get_file,
    list_files,
    put_file,
)
from story.tasks.search import search
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


def test_a_depth_entry_round_trips_through_the_store(s3, tmp_path) -> None:
    store = DepthStore(tmp_path / "depth")
    key = make_key("clip0", "tiny-depth@abc", range(0, 16, 4), (8, 8))
    depth = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    local = store.put(key, depth)
    remote = f"s3://{BUCKET}/depth/{local.relative_to(store.root).as_posix()}"

    put_file(local, remote, s3)
    assert exists(remote, s3)
    back = DepthStore(tmp_path / "elsewhere")
    get_file(remote, back.path(key), s3)
    np.testing.assert_allclose(back.get(key), depth, atol=1e-3)
    with pytest.raises(ObjectStoreError, match="no such object"):
        get_file(f"s3://{BUCKET}/depth/none.npz", tmp_path / "x.npz", s3)


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
