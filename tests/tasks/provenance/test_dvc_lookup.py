"""Recorded DVC md5s: the reader agrees with DVC's own API and follows file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from story.tasks.provenance.dvc_lookup import dvc_hash

REPO = Path(__file__).resolve().parents[3]
TRACKED = ("checkpoints/t2v-tiny", "checkpoints/concepts/bob", "datasets/sample_library")


@pytest.mark.skipif(not (REPO / "dvc.lock").is_file(), reason="needs the repository's dvc.lock")
def test_the_md5s_are_the_ones_dvc_itself_reports() -> None:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        for path in TRACKED:
            outs = repo.find_outs_by_path(os.fspath(REPO / path))
            assert dvc_hash(REPO / path) == outs[0].hash_info.value, path


def test_a_rewritten_lock_file_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    lock = tmp_path / "dvc.lock"
    stage = "schema: '2.0'\nstages:\n  a:\n    outs:\n    - path: model\n      md5: {}\n"
    lock.write_text(stage.format("aaa.dir"))
    assert dvc_hash(tmp_path / "model", repo=tmp_path) == "aaa.dir"
    lock.write_text(stage.format("bbbb.dir"))
    assert dvc_hash(tmp_path / "model", repo=tmp_path) == "bbbb.dir"


def test_an_unreadable_lock_file_means_no_recorded_hash(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "dvc.lock").write_text("stages: [unclosed\n")
    assert dvc_hash(tmp_path / "model", repo=tmp_path) is None
