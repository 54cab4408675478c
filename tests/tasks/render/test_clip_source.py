"""A reproduction refuses a clip file whose bytes changed since the library recorded them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from story.tasks.errors import MediaError
from story.tasks.render.jobs import PlotJob, RenderError
from story.tasks.render.render_plot import check_clip_source

CLIP = Path(__file__).resolve().parents[2] / "test_files" / "pan.mp4"


def _job(uri: Path, recorded: str | None) -> PlotJob:
    clip = {"clip_id": "pan-0", "uri": str(uri), "source_hash": recorded}
    return PlotJob(index=3, candidate=0, prompt="a pan", clip=clip, frame_indices=(0, 1), seed=0)


def test_an_unchanged_clip_passes(tmp_path: Path) -> None:
    copy = tmp_path / "pan.mp4"
    shutil.copy(CLIP, copy)
    check_clip_source(_job(copy, hashlib.sha256(copy.read_bytes()).hexdigest()))


def test_a_clip_rewritten_under_its_path_is_refused_naming_plot_and_file(tmp_path: Path) -> None:
    copy = tmp_path / "pan.mp4"
    shutil.copy(CLIP, copy)
    recorded = hashlib.sha256(copy.read_bytes()).hexdigest()
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(RenderError, match=r"plot 3: clip pan-0 at .*pan\.mp4 changed") as info:
        check_clip_source(_job(copy, recorded))
    assert recorded[:16] in str(info.value)


def test_a_missing_clip_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="gone.mp4: missing file"):
        check_clip_source(_job(tmp_path / "gone.mp4", "0" * 64))
