"""A training run's production probe: the product's path on validation plots, paired against
the starting model's stored report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from story.tasks.errors import StoryError
from story.tasks.training.production_probe import production_row
from story.tasks.training.train_t2v import TrainConfig, Trainer
from tests.models.t2v_stubs import HashTextEncoder
from tests.tasks.training.test_train_t2v import joint_config


def _report(folder, seeds, warp, iou):
    folder.mkdir(parents=True, exist_ok=True)
    rows = {"warp error": [[w] for w in warp], "object IoU": [[v] for v in iou]}
    per_case = {"production": {"scene_seeds": seeds, "structure-guided": rows}}
    (folder / "report.json").write_text(
        json.dumps({"summary": {"model_id": folder.name, "per_case": per_case}})
    )
    return folder


def test_the_row_pairs_the_plots_both_scored(tmp_path) -> None:
    rng = np.random.default_rng(0)
    warp = rng.uniform(0.005, 0.02, 80)
    reference = _report(tmp_path / "v3", list(range(80)), warp, [0.75] * 80)
    # The snapshot scored the first 12 plots: 10% less flicker on each, the same IoU.
    run = _report(tmp_path / "snap", list(range(12)), 0.9 * warp[:12], [0.75] * 12)
    row = production_row(reference / "report.json", run)
    assert row["plots"] == 12
    ratio, low, high = row["warp error"]["ratio"]
    assert ratio == pytest.approx(0.9, abs=1e-4) and low <= 0.9 <= high
    assert row["warp error"]["reference"] == pytest.approx(warp[:12].mean(), abs=1e-4)
    assert row["object IoU"]["difference"] == [0.0, 0.0, 0.0]
    assert "motion error" not in row  # a measure neither report has is left out


def test_a_run_with_the_probe_records_it_in_its_curve(tmp_path, monkeypatch) -> None:
    from story.tasks.evaluation import synthesis_eval

    reference = _report(tmp_path / "ref", [0, 1, 2], [0.01, 0.02, 0.03], [0.5, 0.6, 0.7])
    seen = {}

    def fake_eval(config, out, checkpoints, workspace, judge_folder=None, log=print):
        # Stands in for the renders and the judge: the path taken is what is checked here.
        seen.update(split=config.split, checkpoint=config.checkpoint, scenes=config.scenes)
        _report(out, [0, 1, 2], [0.02, 0.04, 0.06], [0.5, 0.6, 0.7])

    monkeypatch.setattr(synthesis_eval, "evaluate_synthesis", fake_eval)
    cfg = joint_config(
        tmp_path,
        "j",
        steps=1,
        eval_every=1,
        eval_scenes=1,
        eval_steps=1,
        production_plots=3,
        production_reference=str(reference),
    )
    Trainer(cfg, text_encoder=HashTextEncoder(16)).run(log=str)
    curve = [json.loads(line) for line in (tmp_path / "j" / "curve.jsonl").read_text().splitlines()]
    assert len(curve) == 1 and "guided" in curve[0]
    production = curve[0]["production"]
    assert production["plots"] == 3 and production["warp error"]["ratio"][0] == 2.0
    assert seen == {
        "split": "validation",
        "checkpoint": str(tmp_path / "j" / "snapshots" / "step-000001"),
        "scenes": 3,
    }


def test_a_probe_without_a_usable_reference_is_refused_before_training(tmp_path) -> None:
    joint = dict(stage="joint", out=str(tmp_path / "o"), init="m")
    with pytest.raises(StoryError, match="--production-reference"):
        TrainConfig(production_plots=12, **joint)
    with pytest.raises(StoryError, match="no synthesis report"):
        TrainConfig(production_plots=12, production_reference=str(tmp_path / "nope"), **joint)


def test_a_reference_rendered_at_other_sampling_is_refused_by_name(tmp_path) -> None:
    """The probe renders the product's defaults; a reference at other sampling (the default's
    report from before deflicker, say) would credit the run with the change of sampling."""
    from story.tasks.training.production_probe import check_reference

    def with_sampling(name, sampling):
        folder = _report(tmp_path / name, [0, 1], [0.01, 0.02], [0.5, 0.6])
        report = json.loads((folder / "report.json").read_text())
        report["summary"]["config"] = {"sampling": sampling}
        (folder / "report.json").write_text(json.dumps(report))
        return folder

    check_reference(with_sampling("today", {}))
    check_reference(with_sampling("spelled", {"still_hold": 1.0}))
    with pytest.raises(StoryError, match=r"before/report.json was rendered with deflicker=0"):
        check_reference(with_sampling("before", {"still_hold": 1.0, "deflicker": 0.0}))
