"""The judge trainer resumes a stopped run where it stopped and exports a loadable fp16 judge."""

from __future__ import annotations

import json

import torch

from story.models.judge import load_judge
from story.tasks.training import train_judge

TINY = [
    "--batch", "2", "--frames", "4", "--size", "16", "--appearance-frames", "2",
    "--appearance-widths", "8", "16", "--motion-widths", "8", "16", "--embedding-dim", "8",
    "--warmup", "1", "--eval-every", "1", "--val-clips", "4", "--steps", "2",
]  # fmt: skip


def test_a_stopped_run_resumes_and_the_export_matches_the_saved_state(tmp_path) -> None:
    run, out = tmp_path / "run", tmp_path / "judge"
    paths = ["--run", str(run), "--out", str(out)]
    stopped = train_judge.train(train_judge.parse_args([*paths, *TINY, "--stop-step", "1"]))
    assert stopped == {"step": 1, "finished": False} and not out.exists()
    done = train_judge.train(train_judge.parse_args([*paths, *TINY]))
    assert done["steps"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["step"] for p in metrics["curve"]] == [1, 2]
    assert [s["from_step"] for s in metrics["sessions"]] == [0, 1]
    assert set(metrics["validation"]["64x64x16"]) >= {"shape", "colour", "motion", "mask_iou"}
    judge = load_judge(out)
    saved = torch.load(run / train_judge.STATE, weights_only=True)
    for name, value in judge.state_dict().items():
        assert torch.equal(value, saved["weights"][name].half().float())
    again = train_judge.export_saved(train_judge.parse_args([*paths, *TINY, "--export-only"]))
    assert again["model_id"] == done["model_id"] and again["steps"] == 2
