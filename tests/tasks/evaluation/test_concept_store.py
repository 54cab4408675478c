"""A kept decoder top is reused by a run that changes only what the token and LoRA read, and
refused when anything the decoder reads differs; runs on two cores split the cells."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from story.tasks.concepts.params import ConceptParams
from story.tasks.evaluation.concept_store import Cells, cached_decoder, run_cells, save_decoder


def _share(out: str, worker: str) -> None:
    """One run on the out folder: each cell takes 0.4 s and records which worker made it."""
    cells = Cells(Path(out))

    def cell(seed: int):
        def work():
            time.sleep(0.4)
            return {"worker": np.array([ord(worker)]), "seed": np.array([seed])}, [np.zeros(2)]

        return work

    tasks = [("row", seed, cell(seed)) for seed in range(6)]
    finished, _ = run_cells(cells, tasks, log=lambda _: None, poll=0.05)
    got = [int(scores["seed"][0]) for scores, _ in finished]
    assert got == list(range(6)), f"{worker} read the cells out of order: {got}"


def test_two_runs_on_one_folder_split_the_cells_and_both_read_all_of_them(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    runs = [context.Process(target=_share, args=(str(tmp_path), w)) for w in "ab"]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
        assert run.exitcode == 0
    cells = Cells(tmp_path)
    makers = [chr(int(cells.get("row", seed)[0]["worker"][0])) for seed in range(6)]
    assert set(makers) == {"a", "b"}, f"one run made every cell: {makers}"
    assert not list((tmp_path / "cells").glob("*.claim")), "claims left behind"


def test_a_cell_claimed_by_a_stopped_run_is_taken_over(tmp_path: Path) -> None:
    cells = Cells(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "cells" / "row-seed0.claim").write_text(str(gone.pid))
    assert cells.claimant("row", 0) is None
    finished, seconds = run_cells(
        cells, [("row", 0, lambda: ({"x": np.ones(1)}, [np.zeros(2)]))], log=lambda _: None
    )
    assert finished[0][0]["x"].tolist() == [1.0] and "row" in seconds
    holder = Cells(tmp_path)
    (tmp_path / "cells" / "row-seed1.claim").write_text(str(os.getppid()))
    assert holder.claimant("row", 1) == os.getppid() and not holder.claim("row", 1)


def test_a_decoder_serves_runs_that_differ_in_the_token_or_lora_alone(tmp_path: Path) -> None:
    params = ConceptParams(method="timeinv_lora", lr_lora=1e-3, decoder_steps=4)
    weights = {"up.weight": torch.arange(6.0).reshape(2, 3)}
    save_decoder(tmp_path, weights, params, "base@1", [{"step": 1, "loss": 0.5}])
    for same in (
        params,
        replace(params, lr_lora=1e-4),
        replace(params, method="timeinv", lr_table=1e-2, steps=99, buckets=1),
    ):
        found = cached_decoder(tmp_path, same, "base@1")
        assert found is not None and torch.equal(found["up.weight"], weights["up.weight"])
    for other, fingerprint in (
        (replace(params, decoder_lr=1e-3), "base@1"),
        (replace(params, seed=1), "base@1"),
        (replace(params, zoom_out=0.0), "base@1"),
        (params, "base@2"),  # another base checkpoint
    ):
        with pytest.raises(ValueError, match="decoder top trained with other settings"):
            cached_decoder(tmp_path, other, fingerprint)
    assert cached_decoder(tmp_path / "none", params, "base@1") is None
