"""Long-shot and concept evaluations end to end on tiny random models (slow: they train/render)."""

from __future__ import annotations

import json

import pytest

from story.models.judge import VideoJudge
from story.tasks.settings import REPO_ROOT
from story.tasks.training.judge_data import attribute_vocab


def _tiny_judge(folder):
    VideoJudge(
        attributes=attribute_vocab(),
        frames=4,
        size=16,
        appearance_frames=2,
        appearance_widths=(4, 8),
        motion_widths=(8, 8),
        embedding_dim=8,
    ).save_half(folder)
    return folder


@pytest.fixture
def checkpoints(tmp_path):
    from story.models.t2v import random_tiny

    root = tmp_path / "checkpoints"
    random_tiny(frames=4, size=16).save_pretrained(root / "t2v-mini")
    (root / "depth-tiny").symlink_to(REPO_ROOT / "checkpoints" / "depth-tiny")
    return root


@pytest.mark.slow
def test_longshot_report_has_seams_baseline_and_real_floor(tmp_path, checkpoints) -> None:
    from story.tasks.evaluation.longshot_eval import (
        INDEPENDENT,
        REAL,
        LongShotEvalConfig,
        evaluate_longshot,
    )

    config = LongShotEvalConfig(checkpoint="t2v-mini", shots=2, seeds=1, windows=3, steps=2)
    result = evaluate_longshot(config, tmp_path / "out", checkpoints, _tiny_judge(tmp_path / "j"))
    assert result["seams"][INDEPENDENT] == [4, 8]
    assert set(result["seam_ratio"]) >= {INDEPENDENT, REAL}
    tables = json.loads((tmp_path / "out" / "report.json").read_text())["tables"]
    assert tables[0]["rows"][REAL]["same look in every window"]["n"] == 2
    # Every shot is kept (4 settings x 2 shots x 1 seed), so an interrupted run resumes: a
    # second run renders nothing and reports the same seams.
    kept = sorted((tmp_path / "out" / "renders").rglob("*.npy"))
    assert len(kept) == 8
    stamps = [p.stat().st_mtime_ns for p in kept]
    again = evaluate_longshot(config, tmp_path / "out", checkpoints, _tiny_judge(tmp_path / "j"))
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    assert again["seam_ratio"] == result["seam_ratio"]


@pytest.mark.slow
def test_concepts_report_has_every_baseline(tmp_path, checkpoints) -> None:
    from story.tasks.evaluation.concepts_eval import (
        BASELINES,
        ConceptEvalConfig,
        evaluate_concepts,
    )

    config = ConceptEvalConfig(
        checkpoint="t2v-mini",
        shots=2,
        training_seeds=1,
        methods=["timeinv"],
        train_steps=2,
        reg_clips=1,
    )
    images = REPO_ROOT / "datasets" / "concepts" / "bob"
    result = evaluate_concepts(
        config, tmp_path / "out", checkpoints, images, _tiny_judge(tmp_path / "j")
    )
    assert set(result["bob"]) == {*BASELINES, "timeinv"}
