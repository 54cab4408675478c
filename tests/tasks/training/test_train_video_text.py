"""Video-text training data and a short resumable run that exports a loadable checkpoint."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest

from story.tasks.training import video_text_data as data
from story.tasks.training.train_video_text import export, soft_targets, train
from story.tasks.world import captions as grammar
from story.tasks.world import splits

BALL_LEFT = grammar.Described(
    shape="sphere",
    colour="red",
    texture="plain",
    motion="sideways",
    background="grass",
    camera="pan_left",
    side=-1,
)


def test_flips_and_reversals_swap_what_they_should() -> None:
    mirrored = data.labels_of(data.mirrored(BALL_LEFT))
    assert mirrored["motion"] == "sideways_right" and mirrored["camera"] == "pan_right"
    towards = grammar.Described(**{**BALL_LEFT.__dict__, "motion": "towards", "camera": "zoom_in"})
    backwards = data.labels_of(data.reversed_in_time(towards))
    assert backwards["motion"] == "away" and backwards["camera"] == "zoom_out"
    assert data.labels_of(data.mirrored(towards))["motion"] == "towards"


def test_texts_state_only_what_they_say_and_targets_follow() -> None:
    rng = random.Random(0)
    for _ in range(50):
        text, stated = data.make_text(BALL_LEFT, 3, rng)
        assert data.matches(stated, data.labels_of(BALL_LEFT)), text
        assert stated["shape"] == "sphere"
    cube = data.labels_of(grammar.Described(**{**BALL_LEFT.__dict__, "shape": "cube"}))
    ball = data.labels_of(BALL_LEFT)
    targets = soft_targets([{"shape": "sphere"}, {"shape": "cube"}], [ball, cube])
    assert targets.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    partial = soft_targets([{"shape": "sphere"}, {"shape": "sphere"}], [ball, ball])
    assert partial.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_the_frame_cache_holds_train_seeds_only(tmp_path: Path) -> None:
    cache = data.build_cache(tmp_path, splits.TRAIN, 3, 4)
    assert cache.frames.shape == (3, 4, data.SIZE, data.SIZE, 3)
    assert all(splits.split_of(s) == splits.TRAIN for s in cache.seeds)
    again = data.build_cache(tmp_path, splits.TRAIN, 3, 4)
    np.testing.assert_array_equal(np.asarray(again.frames), np.asarray(cache.frames))


def _args(out: Path, steps: int) -> argparse.Namespace:
    return argparse.Namespace(
        out=str(out),
        steps=steps,
        batch=3,
        lr=1e-3,
        warmup=1,
        head_weight=0.5,
        train_clips=6,
        val_clips=4,
        val_queries=4,
        eval_every=2,
        save_every=1,
        log_every=1,
        threads=1,
        seed=0,
    )


@pytest.mark.slow
def test_a_killed_run_resumes_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from story.models.video_text import VideoTextEncoder

    run = tmp_path / "run"
    train(_args(run, 2))
    train(_args(run, 3))
    assert "resumed at step 2" in capsys.readouterr().out
    history = json.loads((run / "curve.json").read_text())
    assert [p["step"] for p in history["curve"]] == [2, 3]
    export(argparse.Namespace(run=str(run), out=str(tmp_path / "ckpt")))
    encoder = VideoTextEncoder(tmp_path / "ckpt", device="cpu")
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    assert encoder.embed_clips([clip]).shape == (1, encoder.dim)
    notes = json.loads((tmp_path / "ckpt" / "config.json").read_text())["notes"]
    assert notes["steps_run"] == 3 and "validation" in notes["selected_on"]
