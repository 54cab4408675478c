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
        UNHELD,
        LongShotEvalConfig,
        evaluate_longshot,
    )

    judge = _tiny_judge(tmp_path / "j")
    before = LongShotEvalConfig(
        checkpoint="t2v-mini", shots=2, seeds=1, windows=3, steps=2, still_hold=0.0, deflicker=0.0
    )
    result = evaluate_longshot(before, tmp_path / "out", checkpoints, judge)
    assert result["seams"][INDEPENDENT] == [4, 8]
    assert set(result["seam_ratio"]) >= {INDEPENDENT, REAL}
    assert UNHELD not in result["seam_ratio"], "without the hold there is nothing to pair"
    tables = json.loads((tmp_path / "out" / "report.json").read_text())["tables"]
    assert tables[0]["rows"][REAL]["same look in every window"]["n"] == 2
    # Every shot is kept (3 settings + independent windows x 2 shots; hold_prompt without the
    # hold is the default's render), so an interrupted run resumes.
    kept = sorted((tmp_path / "out" / "renders").rglob("*.npy"))
    assert len(kept) == 8
    stamps = [p.stat().st_mtime_ns for p in kept]

    # Held, the scene's frames are read; the unheld default is found, not rendered,
    # and the report pairs the hold on the same shots.
    assert LongShotEvalConfig().still_hold == 0.0, "a long shot does not hold by default"
    held = LongShotEvalConfig(
        checkpoint="t2v-mini", shots=2, seeds=1, windows=3, steps=2, still_hold=1.0, deflicker=0.0
    )
    result = evaluate_longshot(held, tmp_path / "out", checkpoints, judge)
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    assert len(list((tmp_path / "out" / "renders").rglob("*.npy"))) == 8 + 5 * 2
    tables = json.loads((tmp_path / "out" / "report.json").read_text())["tables"]
    pairs = tables[-1]["rows"]
    assert {"still_hold", "hold_prompt", "carry_warp"} == {name.split(":")[0] for name in pairs}
    assert all(cell["n"] == 2 for row in pairs.values() for cell in row.values())
    again = evaluate_longshot(held, tmp_path / "out", checkpoints, judge)
    assert again["seam_ratio"] == result["seam_ratio"]

    # With the product's deflicker (on by default), every shot is the shot without it put
    # through the pass: derived from the kept shots (none rendered again), and paired with them.
    from story.tasks.evaluation.longshot_eval import DEFAULT, PLAIN

    calm = LongShotEvalConfig(checkpoint="t2v-mini", shots=2, seeds=1, windows=3, steps=2)
    assert calm.deflicker > 0 and calm.still_hold == 0.0
    result = evaluate_longshot(calm, tmp_path / "out", checkpoints, judge)
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    assert len(list((tmp_path / "out" / "renders").rglob("*.npy"))) == 18 + 4 * 2
    assert PLAIN in result["seam_ratio"]
    pairs = json.loads((tmp_path / "out" / "report.json").read_text())["tables"][-1]["rows"]
    assert "deflicker" in {name.split(":")[0] for name in pairs}
    assert (
        result["seam_ratio"][PLAIN]
        == evaluate_longshot(before, tmp_path / "out", checkpoints, judge)["seam_ratio"][DEFAULT]
    )


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
