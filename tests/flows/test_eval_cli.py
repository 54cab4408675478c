"""`story eval`: reports with intervals and baselines; the sealed test split runs once per model."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from story.flows.cli import app
from story.models.judge import VideoJudge
from story.tasks.evaluation import sealed
from story.tasks.training.judge_data import attribute_vocab


def _tiny_judge(folder: Path) -> Path:
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


def test_judge_report_and_sealed_test_runs(tmp_path, monkeypatch) -> None:
    ledger = tmp_path / "sealed.jsonl"
    monkeypatch.setattr(sealed, "LEDGER", ledger)
    judge = _tiny_judge(tmp_path / "judge")
    runner = CliRunner()
    base = ["eval", "judge", "--clips", "10", "--judge", str(judge), "--out", str(tmp_path / "r")]

    validation = runner.invoke(app, base)
    assert validation.exit_code == 0, validation.output
    assert not ledger.exists()
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = report["tables"][0]["rows"]
    assert "most frequent class (baseline)" in rows
    cell = rows["real clips 64x64 x 16"]["colour"]
    assert cell["n"] == 10 and cell["low"] <= cell["mean"] <= cell["high"]
    assert "data:image/png;base64," in (tmp_path / "r" / "report.html").read_text()

    first = runner.invoke(app, [*base, "--split", "test"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*base, "--split", "test"])
    assert again.exit_code == 2 and "--rerun-sealed" in again.output
    forced = runner.invoke(app, [*base, "--split", "test", "--rerun-sealed"])
    assert forced.exit_code == 0, forced.output
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [e["rerun"] for e in entries] == [False, True]
    assert {e["area"] for e in entries} == {"judge"} and entries[0]["model_id"].startswith("judge@")


def test_train_split_is_refused(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "judge", "--split", "train", "--judge", str(_tiny_judge(tmp_path / "j"))]
    )
    assert result.exit_code == 2 and "train is for learning" in result.output


def test_consistency_names_a_folder_that_is_no_render_and_a_bad_sheet(tmp_path) -> None:
    judge = str(_tiny_judge(tmp_path / "j"))
    missing = CliRunner().invoke(
        app, ["eval", "consistency", str(tmp_path / "nothing"), "--judge", judge]
    )
    assert missing.exit_code == 2
    assert f"{tmp_path / 'nothing'}: cannot read the manifest" in missing.output
    bad = CliRunner().invoke(
        app, ["eval", "consistency", str(tmp_path), "--sheet", "bob", "--judge", judge]
    )
    assert bad.exit_code == 2 and "NAME=DIR" in bad.output


def test_a_run_extended_on_its_own_folder_is_resumed_until_its_own_report_exists(
    tmp_path, monkeypatch
) -> None:
    """Three seeds on the folder of a one-seed run reuse its renders: one re-run, then resumes."""
    from story.flows.eval_cli import _seal

    ledger = tmp_path / "sealed.jsonl"
    monkeypatch.setattr(sealed, "LEDGER", ledger)
    folder = tmp_path / "run"
    folder.mkdir()
    one_seed = {"scenes": 200, "seeds": 1, "steps": 20}
    _seal("synthesis", "test", "m@1", False, one_seed, resumable=folder)
    summary = {"summary": {"config": {"split": "test", "workers": 2, **one_seed}}}
    (folder / "report.json").write_text(json.dumps(summary))

    three_seeds = {**one_seed, "seeds": 3}
    _seal("synthesis", "test", "m@1", True, three_seeds, resumable=folder)
    _seal("synthesis", "test", "m@1", True, three_seeds, resumable=folder)  # interrupted, resumed
    assert [e.get("resumed", False) for e in sealed.read_ledger(ledger)] == [False, False, True]

    summary["summary"]["config"]["seeds"] = 3
    (folder / "report.json").write_text(json.dumps(summary))
    _seal("synthesis", "test", "m@1", True, three_seeds, resumable=folder)
    assert sealed.read_ledger(ledger)[-1]["rerun"] is True
