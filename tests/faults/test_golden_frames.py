"""Golden frames: when a dependency upgrade changes a plot's pixels, `story reproduce` says which
plot differs (the manifest pins every plot's frame hashes), and exits 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from story.flows.cli import app
from story.flows.render_story import render_story
from story.tasks.render.render_plot import PlotRenderer
from story.tasks.settings import Settings
from tests.faults.conftest import Recorder
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import FAST, story_file, story_studio

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    library = build_library(tmp_path / "library", n_good=4, with_bad=False)
    settings = story_studio(tmp_path, library.manifest)
    monkeypatch.setenv("STORY_CHECKPOINTS", str(settings.checkpoints))
    return settings


def _upgrade_changes_plot(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """Stand-in for a new library version whose kernels shift one plot's pixels slightly."""
    original = PlotRenderer.synthesize

    def synthesize(self: PlotRenderer, job, structure: np.ndarray) -> np.ndarray:
        frames = original(self, job, structure)
        if job.index != index:
            return frames
        changed = np.array(frames, copy=True)
        if np.issubdtype(changed.dtype, np.integer):
            changed.flat[0] ^= 1
        else:
            changed.flat[0] += 0.25
        return changed

    monkeypatch.setattr(PlotRenderer, "synthesize", synthesize)


def test_reproduce_names_the_plot_whose_pixels_changed(
    studio: Settings, monkeypatch: pytest.MonkeyPatch, fault: Recorder
) -> None:
    runner = CliRunner()
    ws = ["--workspace", str(studio.workspace)]
    summary = render_story(str(story_file(studio)), studio.resolved(), params=FAST, use_ray=False)
    rid = summary["render_id"]

    same = runner.invoke(app, ["reproduce", rid[:12], *ws])
    assert same.exit_code == 0, same.output
    assert f"render {rid}: identical" in same.output

    _upgrade_changes_plot(monkeypatch, index=1)
    changed = runner.invoke(app, ["reproduce", rid[:12], *ws])
    lines = changed.output.splitlines()
    fault(
        "golden frames: a dependency change shifts plot 1's pixels -> `story reproduce`",
        "exit 1, DIFFERENT, plot 0 identical, plot 1 different",
        f"exit {changed.exit_code}, "
        + ", ".join(line.strip().replace(":", "") for line in lines if "plot" in line)
        if f"render {rid}: DIFFERENT" in changed.output
        else f"exit {changed.exit_code}: {changed.output[-300:]}",
        held=changed.exit_code == 1
        and "  plot 0: identical" in lines
        and "  plot 1: different" in lines,
    )
    assert changed.exit_code == 1, changed.output
    assert f"render {rid}: DIFFERENT" in changed.output
    assert "  plot 0: identical" in lines and "  plot 1: different" in lines
