"""Review proxies and stills: set width, burn-ins on every frame, poster and contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import resize, size_for_width
from story.tasks.outputs.proxy import write_proxy
from story.tasks.outputs.stills import RESAMPLING
from story.tasks.outputs.video_io import mp4_rate, read_mp4
from tests.tasks.outputs.render_fixture import make_render


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_render(tmp_path_factory.mktemp("renders"), (8, 4, 8))


def test_a_review_copy_has_the_width_the_rate_and_every_frame_of_the_cut(render: Path):
    result = write_proxy(render, width=256, resampling="lanczos")
    assert Path(result["path"]) == render / "editorial" / "review_w256.mp4"
    frames = read_mp4(result["path"])
    assert frames.shape == (3 * 20, 256, 256, 3)
    assert mp4_rate(result["path"]) == 24
    assert (result["width"], result["height"], result["frames"]) == (256, 256, 60)


def test_burn_ins_mark_plot_render_and_timecode_corners(render: Path, tmp_path: Path):
    write_proxy(render, width=256, out=tmp_path / "review.mp4")
    proxy = read_mp4(tmp_path / "review.mp4").astype(int)
    source = read_mp4(render / "delivery" / "plot_000.mp4")[0]
    clean = resize(source, size_for_width(source.shape, 256), RESAMPLING).astype(int)
    first = proxy[0]
    corners = {
        "plot": (slice(0, 12), slice(0, 36)),
        "render id": (slice(0, 12), slice(176, 256)),
        "timecode": (slice(244, 256), slice(204, 256)),
    }
    for name, (rows, cols) in corners.items():
        assert np.abs(first[rows, cols] - clean[rows, cols]).mean() > 20, name
    middle = (slice(96, 160), slice(96, 160))
    assert np.abs(first[middle] - clean[middle]).mean() < 6
    # the timecode changes every frame; the plot number only at a cut
    tc = corners["timecode"]
    assert np.abs(proxy[1][tc] - proxy[2][tc]).mean() > 1


def test_proxy_requests_out_of_range_are_clear_errors(render: Path, tmp_path: Path):
    with pytest.raises(AssemblyError, match="proxy width 8"):
        write_proxy(render, width=8, out=tmp_path / "x.mp4")
    with pytest.raises(AssemblyError, match="resampling 'sharp'"):
        write_proxy(render, width=64, resampling="sharp", out=tmp_path / "y.mp4")
    assert not list(tmp_path.glob("*.mp4"))


def test_poster_and_contact_sheet_stand_for_the_render(render: Path):
    poster = Image.open(render / "poster.png")
    assert poster.size == (512, 512)
    sheet = np.asarray(Image.open(render / "contact_sheet.png"))
    assert sheet.shape[1] == 3 * 256 + 4 * 4  # three posters in a row with gaps
    plot_posters = sorted((render / "storyboard").glob("*_poster.png"))
    assert [p.name for p in plot_posters] == [f"plot_{i:03d}_poster.png" for i in range(3)]
    page = (render / "storyboard.html").read_text()
    assert 'src="contact_sheet.png"' in page
    assert all(f'src="storyboard/{p.name}"' in page for p in plot_posters)
    assert "record 01:00:00:00 - 01:00:01:00 (24 frames)" in page
