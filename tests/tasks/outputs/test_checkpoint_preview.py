"""The comparison picture of a re-render (datasets/make_checkpoint_preview.py): one row per plot,
the original's frames on the left and the re-render's on the right, from the folders' own files."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from story.tasks.outputs.imaging import STRIP_GAP, resize
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.manifest import read_manifest
from tests.scripts import load_script
from tests.tasks.outputs.render_fixture import make_render

SCRIPT = Path(__file__).resolve().parents[3] / "datasets" / "make_checkpoint_preview.py"


@pytest.fixture(scope="module")
def preview() -> ModuleType:
    return load_script(SCRIPT)


def last_frames(folder: Path) -> list[np.ndarray]:
    plots = sorted(read_manifest(folder)["plots"], key=lambda p: p["index"])
    return [read_mp4(folder / p["video"])[-1] for p in plots]


def test_each_row_is_a_plot_with_the_original_left_and_the_rerender_right(
    preview: ModuleType, tmp_path: Path
) -> None:
    original = make_render(tmp_path / "a", lengths=(8, 6, 11))
    rerender = make_render(tmp_path / "b", lengths=(8, 6, 14))  # plot 3 ends elsewhere
    picture = preview.comparison_picture(original, rerender)

    width, gap, frames = preview.WIDTH, preview.GAP, preview.FRAMES
    strip = frames * width + (frames - 1) * STRIP_GAP
    assert picture.shape[1] == 2 * strip + gap
    y = 0
    for before, after in zip(last_frames(original), last_frames(rerender), strict=True):
        height = round(after.shape[0] * width / after.shape[1])
        # Each half ends with its own render's last frame, enlarged (nearest).
        left = picture[y : y + height, strip - width : strip]
        right = picture[y : y + height, 2 * strip + gap - width :]
        assert np.array_equal(left, resize(before, (height, width), "nearest"))
        assert np.array_equal(right, resize(after, (height, width), "nearest"))
        y += height + gap
    assert picture.shape[0] == y - gap  # one row per plot, nothing else
    assert not np.array_equal(last_frames(original)[2], last_frames(rerender)[2])


def test_labels_name_the_two_halves_when_both_renders_share_a_checkpoint(
    preview: ModuleType, tmp_path: Path
) -> None:
    original = make_render(tmp_path / "a")
    rerender = make_render(tmp_path / "b")
    plain = preview.comparison_picture(original, rerender)
    named = preview.comparison_picture(original, rerender, ("no hold", "hold"))

    width, gap, frames = preview.WIDTH, preview.GAP, preview.FRAMES
    strip = frames * width + (frames - 1) * STRIP_GAP
    assert named.shape == plain.shape
    # The label is burnt into the first frame of each half, and nowhere else.
    for start in (0, strip + gap):
        first = slice(start, start + width)
        assert not np.array_equal(named[:, first], plain[:, first])
        rest = slice(start + width, start + strip)
        assert np.array_equal(named[:, rest], plain[:, rest])
    # Each half carries its own label.
    assert not np.array_equal(named[:, :width], named[:, strip + gap : strip + gap + width])
