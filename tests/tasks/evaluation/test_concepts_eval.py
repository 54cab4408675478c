"""`story eval concepts` for the character no word describes, and its resume (slow: trains)."""

from __future__ import annotations

import json

import pytest

from story.tasks.settings import REPO_ROOT
from tests.tasks.evaluation.test_longshot_concepts_eval import _tiny_judge


@pytest.fixture
def mini(tmp_path):
    """A checkpoints root with a random tiny `t2v-mini` and the bundled depth net."""
    from story.models.t2v import random_tiny

    root = tmp_path / "checkpoints"
    random_tiny(frames=4, size=16).save_pretrained(root / "t2v-mini")
    (root / "depth-tiny").symlink_to(REPO_ROOT / "checkpoints" / "depth-tiny")
    return root


@pytest.mark.slow
def test_zib_is_scored_by_its_colour_signature_and_a_rerun_resumes(tmp_path, mini) -> None:
    from story.tasks.evaluation.concepts_eval import ConceptEvalConfig, evaluate_concepts

    config = ConceptEvalConfig(
        checkpoint="t2v-mini",
        shots=2,
        training_seeds=1,
        methods=["timeinv_lora"],
        train_steps=1,
        sample_steps=2,
        reg_clips=1,
        character="zib",
        baselines=["words"],
        lr_table=1e-3,
    )
    images = REPO_ROOT / "datasets" / "concepts" / "zib"
    judge = _tiny_judge(tmp_path / "j")
    result = evaluate_concepts(config, tmp_path / "out", mini, images, judge)
    assert set(result["zib"]) == {"timeinv_lora", "baseline: zib spelled out in words"}
    table = json.loads((tmp_path / "out" / "report.json").read_text())["tables"][0]
    assert "colour signature" in table["columns"] and "ground + motion" in table["columns"]
    pack = json.loads(
        (tmp_path / "out" / "packs" / "timeinv_lora-seed0" / "concept.json").read_text()
    )
    assert pack["params"]["lr_table"] == 1e-3 and pack["name"] == "zib"
    cells = sorted(p.name for p in (tmp_path / "out" / "cells").iterdir())
    assert cells == ["baseline-zib-spelled-out-in-words-seed0.npz", "timeinv-lora-seed0.npz"]
    # A second run finds every cell done: it trains and renders nothing, and reports the same.
    again = evaluate_concepts(config, tmp_path / "out", mini, images, judge)
    assert again["identity"] == result["identity"]
    assert not (tmp_path / "out" / "packs" / "timeinv_lora-seed1").exists()
