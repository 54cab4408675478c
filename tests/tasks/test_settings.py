"""Settings as a worker rebuilds them (absolute, from any folder) and as outputs record them
(paths inside the checkout relative to it, so two clones record the same)."""

from __future__ import annotations

from pathlib import Path

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
