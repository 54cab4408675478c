"""The split guard: no training or selection code may draw a seed from the sealed test range.

Each trainer is run with its seed range moved into the test split and must refuse with a
SplitError; the ranges each trainer is configured with (its defaults and its dvc.yaml stage)
must lie in the splits they are meant for.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from story.tasks.training import judge_data, t2v_data, train_depth, train_judge
from story.tasks.world import splits
from story.tasks.world.splits import TEST, TRAIN, VALIDATION, SplitError

REPO = Path(__file__).resolve().parents[3]


def _stage_args(stage: str, module: str) -> list[list[str]]:
    """The argument lists of every `python -m <module>` command of a dvc.yaml stage."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    commands = stages[stage]["cmd"]
    commands = [commands] if isinstance(commands, str) else commands
    out = []
    for command in commands:
        words = shlex.split(command)
        if module in words:
            out.append(words[words.index(module) + 1 :])
    assert out, f"dvc.yaml stage {stage} runs no {module}"
    return out


def _into_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Move every purpose block's start into the test split, as a wrong offset would."""
    real = splits.base
    monkeypatch.setattr(splits, "base", lambda split, purpose: real(TEST, purpose))


def test_splits_are_disjoint_and_require_refuses_other_splits() -> None:
    blocks = {s: splits.seeds(s, "scenes", 3) for s in splits.SPLITS}
    assert [splits.split_of(b[0]) for b in blocks.values()] == list(splits.SPLITS)
    assert not set(blocks[TRAIN]) & set(blocks[TEST])
    assert splits.require(blocks[VALIDATION][0], TRAIN, VALIDATION) == blocks[VALIDATION][0]
    with pytest.raises(SplitError, match="test split"):
        splits.require(blocks[TEST][0], TRAIN, VALIDATION)
    with pytest.raises(SplitError):
        splits.seeds(TRAIN, "scenes", 2, start=splits.PURPOSE_BLOCK - 1)


def test_t2v_stream_refuses_a_seed_range_reaching_into_test(monkeypatch) -> None:
    source = t2v_data.MiniworldSource(frames=2, height=8, width=8, seed=0)
    assert source.batch(2).video.shape == (2, 3, 2, 8, 8)
    first, count = t2v_data.TRAIN_SCENES
    assert {splits.split_of(first), splits.split_of(first + count - 1)} == {TRAIN}
    with pytest.raises(SplitError):
        source.scene(splits.seeds(TEST, "scenes", 1)[0])
    monkeypatch.setattr(t2v_data, "TRAIN_SCENES", (splits.base(TEST, "scenes"), count))
    monkeypatch.setattr(source, "rng", np.random.default_rng(1))
    with pytest.raises(SplitError):
        source.batch(16)


def test_depth_trainer_ranges_and_a_moved_offset(monkeypatch) -> None:
    for argv in [[], *_stage_args("train_depth", "story.tasks.training.train_depth")]:
        ranges = train_depth.seed_ranges(train_depth.parse_args(argv))
        assert {splits.split_of(s) for s in ranges["train"]} == {TRAIN}
        assert {splits.split_of(s) for s in ranges["heldout"]} == {VALIDATION}
    assert splits.split_of(train_depth.HELDOUT_SEED) == VALIDATION
    _into_test(monkeypatch)
    with pytest.raises(SplitError):
        train_depth.seed_ranges(train_depth.parse_args(["--train-clips", "4"]))


def test_judge_trainer_ranges_and_a_moved_offset(monkeypatch) -> None:
    for argv in [[], *_stage_args("train_judge", "story.tasks.training.train_judge")]:
        args = train_judge.parse_args(argv)
        last = judge_data.training_seeds(args.steps - 1, args.batch)
        assert splits.split_of(judge_data.training_seeds(0, args.batch)[0]) == TRAIN
        assert splits.split_of(last[-1]) == TRAIN
    assert train_judge.TRAIN_SPLITS == (TRAIN,)
    _into_test(monkeypatch)
    seeds = judge_data.training_seeds(0, 2)
    with pytest.raises(SplitError):
        judge_data.render_judge_clips(seeds, 2, 16, allowed=train_judge.TRAIN_SPLITS)


def test_concept_shots_train_on_train_and_choose_on_validation(monkeypatch) -> None:
    from bench import bench_concepts
    from story.tasks.evaluation import concept_shots

    assert bench_concepts.regularization_seeds is concept_shots.regularization_seeds
    assert bench_concepts.shot_seeds is concept_shots.shot_seeds
    assert {splits.split_of(s) for s in concept_shots.regularization_seeds(8)} == {TRAIN}
    for split in (VALIDATION, TEST):
        assert {splits.split_of(s) for s in concept_shots.shot_seeds(split, 32)} == {split}
    _into_test(monkeypatch)
    with pytest.raises(SplitError):
        concept_shots.regularization_seeds(2)
