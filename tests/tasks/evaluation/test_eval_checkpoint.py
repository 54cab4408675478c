"""Evaluations score a zoo name or any checkpoint folder (training snapshots included)."""

from __future__ import annotations

import shutil

import pytest

from story.models.zoo import SYNTHESIS_INDEX
from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
from story.tasks.render.jobs import RenderError
from story.tasks.settings import REPO_ROOT

CHECKPOINTS = REPO_ROOT / "checkpoints"


def test_a_name_resolves_in_the_zoo_and_a_snapshot_folder_is_used_as_is(tmp_path) -> None:
    assert eval_checkpoint("tiny", CHECKPOINTS) == CHECKPOINTS / "t2v-tiny"
    snapshot = tmp_path / "snapshots" / "step-001000"
    snapshot.mkdir(parents=True)
    shutil.copy(CHECKPOINTS / "t2v-tiny" / SYNTHESIS_INDEX, snapshot / SYNTHESIS_INDEX)
    assert eval_checkpoint(str(snapshot), CHECKPOINTS) == snapshot


def test_a_folder_without_a_model_or_an_unknown_name_is_a_clear_error(tmp_path) -> None:
    empty = tmp_path / "step-002000"
    empty.mkdir()
    with pytest.raises(RenderError, match=f"{empty}.*{SYNTHESIS_INDEX} missing"):
        eval_checkpoint(str(empty), CHECKPOINTS)
    with pytest.raises(RenderError, match="no-such-model"):
        eval_checkpoint("no-such-model", CHECKPOINTS)
