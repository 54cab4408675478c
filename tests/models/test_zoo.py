"""The model zoo: preset names resolve to one folder everywhere; geometry comes from the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from story.models.t2v import T2VConfig, random_tiny
from story.models.zoo import (
    CheckpointError,
    SynthesisGeometry,
    depth_folder,
    synthesis_folder,
    synthesis_geometry,
)
from story.tasks.settings import REPO_ROOT

BUNDLED = REPO_ROOT / "checkpoints"


def test_the_bundled_preset_resolves_and_reports_its_own_geometry() -> None:
    folder = synthesis_folder("tiny", BUNDLED)
    assert folder == BUNDLED / "t2v-tiny"
    loaded = T2VConfig.from_dict(json.loads((folder / "model_index.json").read_text()))
    assert synthesis_geometry(folder) == SynthesisGeometry(
        loaded.frames, loaded.height, loaded.width, loaded.structure_channels
    )
    assert depth_folder("tiny", BUNDLED) == BUNDLED / "depth-tiny"
    assert (depth_folder("tiny", BUNDLED) / "config.json").is_file()


def test_a_saved_checkpoint_of_another_size_reports_that_size(tmp_path: Path) -> None:
    random_tiny(frames=4, size=16).save_pretrained(tmp_path / "small")
    geometry = synthesis_geometry(synthesis_folder("small", tmp_path))
    assert (geometry.frames, geometry.size) == (4, (16, 16))


@pytest.mark.parametrize("name", ["", "../t2v-tiny", "a/b", ".hidden", "nope"])
def test_a_name_that_names_no_model_is_refused_naming_where_it_looked(name: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        synthesis_folder(name, BUNDLED)
    assert repr(name) in str(caught.value)
    assert str(BUNDLED) in str(caught.value)


def test_a_broken_index_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"frames": 8}')
    with pytest.raises(CheckpointError, match="model_index.json: no valid frames/height/width"):
        synthesis_geometry(synthesis_folder("broken", tmp_path))


def test_a_depth_path_is_itself_and_the_preset_needs_a_root(tmp_path: Path) -> None:
    assert depth_folder(tmp_path / "dpt", None) == tmp_path / "dpt"
    with pytest.raises(CheckpointError, match="checkpoints folder"):
        depth_folder("tiny", None)
