"""The shape tagger: a tiny random config saved and loaded in the shipped format, and the bundled
checkpoint reading the main object's shape of validation-split world clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from story.models.shape_tagger import (
    ShapeTagger,
    ShapeTaggerConfig,
    ShapeTaggerRunner,
    shape_tagger_folder,
)
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld, splits

BUNDLED = REPO_ROOT / "checkpoints" / "shape-tiny"


def test_saved_tagger_reloads_and_gives_probabilities(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ShapeTagger(ShapeTaggerConfig(labels=["a", "b", "c"], frames=2, size=32, widths=[8]))
    folder = model.eval().save_pretrained(tmp_path / "tagger")
    runner = ShapeTaggerRunner(folder)
    clips = [np.random.default_rng(i).integers(0, 256, (5, 40, 56, 3), np.uint8) for i in range(3)]
    probs = runner.probs(clips)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    with torch.inference_mode():
        from story.models.video_text import prepare_clip

        expected = model(torch.stack([prepare_clip(c, 2, 32) for c in clips])).softmax(-1)
    np.testing.assert_allclose(probs, expected.numpy(), atol=2e-2)


def test_missing_or_bad_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        ShapeTagger.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"nope": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a shape tagger config"):
        ShapeTagger.from_pretrained(tmp_path)


def test_settings_pick_the_folder(tmp_path: Path) -> None:
    class Chosen:
        checkpoints = tmp_path
        shape_model = "tiny"

    assert shape_tagger_folder(Chosen()) is None
    Chosen.shape_model = "none"
    assert shape_tagger_folder(Chosen()) is None
    Chosen.shape_model = str(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="absent"):
        shape_tagger_folder(Chosen())


@pytest.mark.skipif(not BUNDLED.is_dir(), reason="bundled shape tagger not trained")
def test_bundled_tagger_reads_validation_shapes() -> None:
    runner = ShapeTaggerRunner(BUNDLED)
    seeds = splits.seeds(splits.VALIDATION, "library", 24, start=50_000)
    specs = [miniworld.sample_scene(s) for s in seeds]
    probs = runner.probs([miniworld.render(spec).rgb for spec in specs])
    read = [runner.labels[i] for i in probs.argmax(1)]
    right = sum(r == spec.objects[0].shape for r, spec in zip(read, specs, strict=True))
    assert right >= 20, list(zip(read, [s.objects[0].shape for s in specs], strict=True))
