"""A kept decoder top is reused by a run that changes only what the token and LoRA read, and
refused when anything the decoder reads differs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from story.tasks.concepts.params import ConceptParams
from story.tasks.evaluation.concept_store import cached_decoder, save_decoder


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
