"""Assembly: mp4s decode back to the frames written, story.mp4 is the delivered cut, pages safe."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.imaging import colorize_structure, film_strip, side_by_side
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.outputs.storyboard import write_comparison, write_storyboard
from story.tasks.outputs.video_io import concat_mp4, mp4_fps, mp4_rate, read_mp4, write_mp4
from story.tasks.script.parse import load_story
from tests.tasks.outputs.render_fixture import STORIES, moving_square


def test_mp4_round_trip_keeps_frame_count_size_and_content(tmp_path: Path):
    frames = moving_square(12, 32, 48)
    path = tmp_path / "plots" / "plot_000.mp4"
    write_mp4(path, frames, fps=8)
    decoded = read_mp4(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4
    assert mp4_fps(path) == pytest.approx(8)
    assert [p.name for p in path.parent.iterdir()] == ["plot_000.mp4"]


def test_odd_sizes_are_padded_to_even(tmp_path: Path):
    frames = moving_square(5, 33, 47)
    write_mp4(tmp_path / "odd.mp4", frames, fps=12.5)
    decoded = read_mp4(tmp_path / "odd.mp4")
    assert decoded.shape == (5, 34, 48, 3)
    assert np.abs(decoded[:, :33, :47].astype(int) - frames.astype(int)).mean() < 6
    assert mp4_fps(tmp_path / "odd.mp4") == pytest.approx(12.5)


def test_same_frames_give_identical_files(tmp_path: Path):
    frames = moving_square(8, 32, 32)
    write_mp4(tmp_path / "a.mp4", frames, fps=8)
    write_mp4(tmp_path / "b.mp4", frames, fps=8)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((0, 8, 8, 3), np.uint8),
        np.zeros((4, 8, 8), np.uint8),
        np.zeros((4, 8, 8, 3), np.float32),
        [[0]],
    ],
)
def test_bad_frames_raise_and_leave_no_file(tmp_path: Path, frames):
    with pytest.raises(AssemblyError):
        write_mp4(tmp_path / "bad.mp4", frames, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AssemblyError, match="cannot write"):
        write_mp4(blocker / "x.mp4", moving_square(2, 8, 8), fps=8)


def test_concat_length_is_the_sum_and_sizes_are_unified(tmp_path: Path):
    parts = [(7, 32, 48), (5, 64, 96), (3, 33, 47)]
    paths = []
    for n, (t, h, w) in enumerate(parts):
        paths.append(tmp_path / f"p{n}.mp4")
        write_mp4(paths[-1], moving_square(t, h, w), fps=8)
    written = concat_mp4(paths, tmp_path / "story.mp4", fps=8)
    story = read_mp4(tmp_path / "story.mp4")
    assert written == story.shape[0] == sum(t for t, _h, _w in parts)
    assert story.shape[1:] == (32, 48, 3)
    sized = concat_mp4(paths, tmp_path / "sized.mp4", fps=8, size=(40, 40))
    assert read_mp4(tmp_path / "sized.mp4").shape == (sized, 40, 40, 3)
    with pytest.raises(AssemblyError, match="nothing"):
        concat_mp4([], tmp_path / "none.mp4", fps=8)


def test_side_by_side_tiles_candidates_and_holds_short_ones():
    a = moving_square(6, 16, 16)
    b = moving_square(4, 12, 20, colour=(0, 0, 255))
    tiled = side_by_side([a, b])
    assert tiled.shape == (6, 16, 16 + 2 + 20, 3)
    assert np.array_equal(tiled[:, :, :16], a)
    assert np.array_equal(tiled[5, :12, 18:], b[3])


def test_structure_colormap_and_film_strip_shapes():
    structure = np.linspace(-1, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    colours = colorize_structure(structure)
    assert colours.shape == (4, 8, 8, 3) and colours.dtype == np.uint8
    assert colours[0, 0, 0].sum() < colours[-1, -1, -1].sum()
    assert film_strip(moving_square(20, 8, 10), count=8).shape == (8, 8 * 10 + 7 * 2, 3)
    with pytest.raises(AssemblyError):
        colorize_structure(np.zeros((8, 8)))


def test_storyboard_escapes_text_and_links_only_local_files(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    hostile = '<script>alert("x")</script> & <img src=http://example.com/x.png>'
    records = []
    for plot in story.plots:
        video = tmp_path / "plots" / f"plot_{plot.index:03d}.mp4"
        records.append(
            PlotRecord(
                index=plot.index,
                text=hostile if plot.index == 0 else plot.text,
                query=plot.query,
                prompt=plot.prompt,
                clip_id=f"clip{plot.index}",
                clip_uri="media/clip.mp4",
                clip_caption="a ball rolls",
                retrieved_frames=moving_square(6, 16, 16),
                structure=np.zeros((6, 16, 16), np.float32),
                generated=[moving_square(6, 16, 16)] * (2 if plot.index == 1 else 1),
                video_path=video,
                params={"seed": plot.seed, "note": hostile},
            )
        )
    page = write_storyboard(tmp_path, story, records, render_id="abc123")
    html = page.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert links and not [link for link in links if ":" in link or link.startswith("/")]
    assert html.count('<section class="plot"') == len(story.plots)
    sources = re.findall(r'<img class="strip" src="([^"]+)"', html)
    assert len(sources) == 3 * len(story.plots) + 1
    assert all((tmp_path / s).is_file() and not s.startswith("/") for s in sources)
    assert 'href="plots/plot_000.mp4"' in html


def test_comparison_page_puts_runs_side_by_side(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")

    def run(shade: int) -> list[PlotRecord]:
        return [
            PlotRecord(
                index=p.index,
                text=p.text,
                query=p.query,
                prompt=p.prompt,
                clip_id="c",
                clip_uri=None,
                clip_caption=None,
                retrieved_frames=None,
                structure=None,
                generated=np.full((3, 8, 8, 3), shade, np.uint8),
            )
            for p in story.plots
        ]

    page = write_comparison(
        tmp_path / "compare.html", story, [("tiny", run(10)), ("big", run(200))]
    )
    html = page.read_text(encoding="utf-8")
    assert html.count("<tr>") == 1 + len(story.plots)
    assert "<th>tiny</th><th>big</th>" in html
    sources = re.findall(r'<img class="strip" src="([^"]+)"', html)
    assert len(sources) == 2 * len(story.plots) == len(set(sources))
    assert all((tmp_path / s).is_file() for s in sources)


def test_write_outputs_assembles_a_whole_render_folder(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    lengths = [6, 4, 5]
    records = [
        PlotRecord(
            index=p.index,
            text=p.text,
            query=p.query,
            prompt=p.prompt,
            clip_id=f"clip{p.index}",
            clip_uri="media/x.mp4",
            clip_caption="a ball",
            retrieved_frames=moving_square(lengths[p.index], 16, 16),
            structure=np.zeros((lengths[p.index], 16, 16), np.float32),
            generated=[moving_square(lengths[p.index], 16, 16)] * (2 if p.index == 1 else 1),
            params={"seed": p.index},
        )
        for p in story.plots
    ]
    outputs = write_outputs(tmp_path / "render", story, records, fps=8, render_id="r1")
    out = tmp_path / "render"
    assert outputs["video"] == "story.mp4"
    assert outputs["plots"] == [f"plots/plot_{i:03d}.mp4" for i in range(3)]
    assert outputs["delivered_plots"] == [f"delivery/plot_{i:03d}.mp4" for i in range(3)]
    # model frames at the model's rate; the cut at 24 fps, three delivered frames per model frame
    assert read_mp4(out / "plots" / "plot_001.mp4").shape == (4, 16, 16 + 2 + 16, 3)
    assert mp4_fps(out / "plots" / "plot_001.mp4") == pytest.approx(8)
    assert read_mp4(out / "delivery" / "plot_001.mp4").shape == (12, 16, 16 + 2 + 16, 3)
    assert mp4_rate(out / "story.mp4") == 24
    assert read_mp4(out / "story.mp4").shape == (3 * sum(lengths), 16, 16, 3)
    for key in ("storyboard", "timeline", "poster", "contact_sheet"):
        assert (out / outputs[key]).is_file()
    entry = records[1].manifest_entry(out)
    assert entry["video"] == "plots/plot_001.mp4"
    assert entry["frames"] == 4 and len(entry["frames_sha256"]) == 2
    assert entry["params"] == {"seed": 1}
    assert entry["delivered"]["video"] == "delivery/plot_001.mp4"
    assert entry["delivered"]["record_frame"] == 18 and entry["delivered"]["frames"] == 12
    assert len(entry["delivered"]["sha256"]) == 64


def test_model_frames_and_their_hashes_do_not_depend_on_the_delivery_rate(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")

    def records() -> list[PlotRecord]:
        return [
            PlotRecord(
                p.index,
                p.text,
                p.query,
                p.prompt,
                None,
                None,
                None,
                None,
                None,
                moving_square(8, 16, 16),
            )
            for p in story.plots
        ]

    first, second = records(), records()
    write_outputs(tmp_path / "a", story, first, fps=8, delivery=Delivery("24", "hold"))
    write_outputs(tmp_path / "b", story, second, fps=8, delivery=Delivery("25", "flow"))
    for a, b in zip(first, second, strict=True):
        assert (
            a.manifest_entry(tmp_path / "a")["frames_sha256"]
            == (b.manifest_entry(tmp_path / "b")["frames_sha256"])
        )
        assert (tmp_path / "a" / "plots" / f"plot_{a.index:03d}.mp4").read_bytes() == (
            tmp_path / "b" / "plots" / f"plot_{b.index:03d}.mp4"
        ).read_bytes()
    assert [r.delivered.frames for r in first] == [24, 24, 24]
    assert [r.delivered.frames for r in second] == [25, 25, 25]
    assert mp4_rate(tmp_path / "b" / "story.mp4") == 25


def test_storyboard_into_an_unusable_folder_is_a_clear_error(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    record = PlotRecord(0, "t", "q", "p", None, None, None, None, None, moving_square(2, 8, 8))
    with pytest.raises(AssemblyError, match="cannot write"):
        write_storyboard(blocker / "render", story, [record])


def test_concat_letterboxes_a_wider_clip_instead_of_stretching_it(tmp_path: Path):
    write_mp4(tmp_path / "a.mp4", np.full((2, 32, 32, 3), 128, np.uint8), fps=8)
    write_mp4(tmp_path / "wide.mp4", np.full((2, 32, 64, 3), 255, np.uint8), fps=8)
    concat_mp4([tmp_path / "a.mp4", tmp_path / "wide.mp4"], tmp_path / "s.mp4", fps=8)
    last = read_mp4(tmp_path / "s.mp4")[-1].astype(int)
    assert last[:6].mean() < 20 and last[-6:].mean() < 20
    assert last[12:20].mean() > 235
