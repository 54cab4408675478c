"""Checkpoint identity: one folder hash (cached or not, the same), one weights fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from story.models.t2v import StructureT2V, random_tiny
from story.models.timeinv import SPATIAL_ATTENTION, add_lora
from story.tasks.hashing import sha256_file
from story.tasks.provenance.checkpoint_identity import (
    MissingWeightsError,
    checkpoint_fingerprint,
    checkpoint_sha256,
    model_fingerprint,
)

BUNDLED = Path(__file__).resolve().parents[3] / "checkpoints" / "t2v-tiny"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[StructureT2V, Path]:
    model = random_tiny(text_dim=16, frames=4, seed=3).eval()
    return model, model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_the_folder_hash_is_the_same_with_and_without_the_workspace_cache(
    saved: tuple[StructureT2V, Path], tmp_path: Path
) -> None:
    _, folder = saved
    plain = checkpoint_sha256(folder)
    assert checkpoint_sha256(folder, workspace=tmp_path) == plain
    assert checkpoint_sha256(folder, workspace=tmp_path) == plain, "remembered, still equal"
    index = folder / "model_index.json"
    assert checkpoint_sha256(index) == sha256_file(index)


def test_the_bundled_checkpoint_hash_is_the_one_renders_pin() -> None:
    """The example render pinned this hash; a change here changes every render id."""
    assert checkpoint_sha256(BUNDLED) == (
        "fa6a025e1ca7da79cc33aa4232eab7ec4893419c3472f5fd2497ab03e6e29bf1"
    )


def test_a_changed_byte_changes_the_folder_hash_but_not_the_weights_fingerprint(
    saved: tuple[StructureT2V, Path], tmp_path: Path
) -> None:
    model, folder = saved
    before = checkpoint_sha256(folder)
    (folder / "notes.txt").write_text("trained on the miniature world")
    assert checkpoint_sha256(folder) != before
    assert checkpoint_fingerprint(folder) == model_fingerprint(model)
    (folder / "notes.txt").unlink()


def test_the_fingerprint_ignores_lora_and_sees_one_changed_weight(
    saved: tuple[StructureT2V, Path],
) -> None:
    model, folder = saved
    reloaded = StructureT2V.from_pretrained(folder, device="cpu")
    assert model_fingerprint(reloaded) == checkpoint_fingerprint(folder)
    add_lora(reloaded.unet, "bob", 4, 4.0, SPATIAL_ATTENTION)
    assert model_fingerprint(reloaded) == checkpoint_fingerprint(folder)
    with torch.no_grad():
        next(reloaded.structure_encoder.parameters()).view(-1)[0] += 1.0
    assert model_fingerprint(reloaded) != checkpoint_fingerprint(folder)


def test_a_folder_without_weights_is_named(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    with pytest.raises(MissingWeightsError, match="vae: no safetensors weights"):
        checkpoint_fingerprint(tmp_path)
