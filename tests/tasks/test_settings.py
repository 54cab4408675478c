"""Settings as a worker rebuilds them (absolute, from any folder) and as outputs record them
(paths inside the checkout relative to it, so two clones record the same)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from story.tasks.settings import REPO_ROOT, Settings


def test_workers_rebuild_the_same_settings_and_outputs_record_checkout_paths_relative(
    tmp_path: Path,
) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    rebuilt = Settings(**settings.resolved())
    assert rebuilt.checkpoints == settings.checkpoints == REPO_ROOT / "checkpoints"
    recorded = settings.recorded()
    assert recorded["checkpoints"] == "checkpoints"
    assert recorded["workspace"] == str(tmp_path / "ws")  # outside the checkout: as given


def test_ingest_max_side_is_the_stored_size_or_at_least_two_pixels() -> None:
    assert Settings().ingest_max_side == 256
    assert Settings(ingest_max_side=0).ingest_max_side == 0
    with pytest.raises(ValidationError, match="at least 2 pixels"):
        Settings(ingest_max_side=1)
    with pytest.raises(ValidationError):
        Settings(ingest_max_side=-4)
