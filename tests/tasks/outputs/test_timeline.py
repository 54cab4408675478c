"""The OTIO timeline loads with opentimelineio: one clip per plot, relative media, lineage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from story.tasks.outputs.assemble import AssemblyError, PlotRecord, write_mp4
from story.tasks.outputs.timeline import write_timeline
from story.tasks.script.parse import load_story

STORIES = Path(__file__).resolve().parents[2] / "test_files" / "stories"


def records_for(out: Path, lengths: list[int]) -> list[PlotRecord]:
    story = load_story(STORIES / "good_basic.yaml")
    records = []
    for plot, length in zip(story.plots, lengths, strict=True):
        video = out / "plots" / f"plot_{plot.index:03d}.mp4"
        generated = np.full((length, 16, 16, 3), 40 * plot.index, np.uint8)
        write_mp4(video, generated, fps=8)
        records.append(
            PlotRecord(
                index=plot.index,
                text=plot.text,
                query=plot.query,
                prompt=plot.prompt,
                clip_id=f"clip{plot.index}",
                clip_uri=f"media/{plot.index}.mp4",
                clip_caption="a ball",
                retrieved_frames=None,
                structure=None,
                generated=generated,
                video_path=video,
                params={"seed": 100 + plot.index, "checkpoint": "tiny@abc", "tau": plot.tau},
            )
        )
    return records


def test_timeline_has_one_clip_per_plot_with_lineage(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    lengths = [12, 7, 20]
    records = records_for(tmp_path / "render", lengths)
    path = write_timeline(tmp_path / "render", story, records[::-1], fps=8, render_id="r123")

    timeline = otio.adapters.read_from_file(str(path))
    assert timeline.name == story.title
    assert timeline.metadata["story"]["render_id"] == "r123"
    (track,) = timeline.tracks
    clips = list(track.find_clips())
    assert len(clips) == len(story.plots)
    assert [c.source_range.duration.value for c in clips] == lengths
    assert timeline.duration().to_frames() == sum(lengths)
    for clip, plot in zip(clips, story.plots, strict=True):
        lineage = clip.metadata["story"]
        assert lineage["clip_id"] == f"clip{plot.index}"
        assert lineage["prompt"] == plot.prompt
        assert lineage["seed"] == 100 + plot.index
        assert lineage["checkpoint"] == "tiny@abc"
        url = clip.media_reference.target_url
        assert not Path(url).is_absolute()
        assert (path.parent / url).is_file()


def test_timeline_still_points_at_its_media_after_the_folder_moves(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    records = records_for(tmp_path / "render", [3, 3, 3])
    write_timeline(tmp_path / "render", story, records, fps=8)
    moved = shutil.move(tmp_path / "render", tmp_path / "elsewhere")
    timeline = otio.adapters.read_from_file(str(Path(moved) / "timeline.otio"))
    for clip in timeline.find_clips():
        assert (Path(moved) / clip.media_reference.target_url).is_file()


def test_a_plot_without_video_is_refused(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    records = records_for(tmp_path, [2, 2, 2])
    records[1].video_path = None
    with pytest.raises(AssemblyError, match="plot 1 has no video"):
        write_timeline(tmp_path, story, records, fps=8)
    assert not (tmp_path / "timeline.otio").exists()
