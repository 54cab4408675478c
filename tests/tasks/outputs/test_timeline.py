"""The OTIO timeline at the delivery rate: one clip per plot, record start, media, lineage."""

from __future__ import annotations

import shutil
from pathlib import Path

import opentimelineio as otio
import pytest

from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.timeline import build_timeline
from story.tasks.outputs.video_io import read_mp4
from tests.tasks.outputs.render_fixture import plot_records


def test_timeline_has_one_clip_per_plot_at_24_fps_from_one_hour(tmp_path: Path):
    lengths = [12, 7, 20]
    story, records = plot_records(lengths)
    out = tmp_path / "render"
    write_outputs(out, story, records[::-1], fps=8, render_id="r123")

    timeline = otio.adapters.read_from_file(str(out / "timeline.otio"))
    assert timeline.name == story.title
    assert timeline.metadata["story"]["render_id"] == "r123"
    assert timeline.metadata["story"]["delivery"] == {"rate": "24", "fps": "24/1", "retime": "flow"}
    assert timeline.global_start_time.to_timecode() == "01:00:00:00"
    (track,) = timeline.tracks
    clips = list(track.find_clips())
    assert [c.metadata["story"]["index"] for c in clips] == [0, 1, 2]
    assert [c.source_range.duration.value for c in clips] == [3 * n for n in lengths]
    assert all(c.source_range.duration.rate == 24 for c in clips)
    assert timeline.duration().to_frames() == 3 * sum(lengths)
    mob_ids = [c.metadata["AAF"]["MobID"] for c in clips]
    assert len(set(mob_ids)) == 3 and all(m.startswith("urn:smpte:umid:") for m in mob_ids)
    for clip, plot in zip(clips, story.plots, strict=True):
        lineage = clip.metadata["story"]
        assert clip.name == f"plot {plot.index + 1}: {plot.text}"
        assert lineage["clip_id"] == f"clip{plot.index}"
        assert lineage["prompt"] == plot.prompt
        assert lineage["seed"] == 100 + plot.index
        url = clip.media_reference.target_url
        assert url == f"delivery/plot_{plot.index:03d}.mp4"
        media = read_mp4(out / url)
        assert len(media) == clip.media_reference.available_range.duration.value


def test_a_23976_delivery_keeps_plot_durations_within_half_a_frame(tmp_path: Path):
    story, records = plot_records([16, 8, 8])
    out = tmp_path / "render"
    write_outputs(out, story, records, fps=8, delivery=Delivery("23.976"))
    timeline = otio.adapters.read_from_file(str(out / "timeline.otio"))
    clips = list(timeline.find_clips())
    assert clips[0].source_range.duration.rate == pytest.approx(24000 / 1001)
    for clip, asked in zip(clips, [2.0, 1.0, 1.0], strict=True):
        seconds = clip.source_range.duration.to_seconds()
        assert abs(seconds - asked) <= 0.5 / (24000 / 1001)
    assert abs(timeline.duration().to_seconds() - 4.0) <= 0.5 / (24000 / 1001)


def test_timeline_still_points_at_its_media_after_the_folder_moves(tmp_path: Path):
    story, records = plot_records([3, 3, 3])
    write_outputs(tmp_path / "render", story, records, fps=8)
    moved = shutil.move(tmp_path / "render", tmp_path / "elsewhere")
    timeline = otio.adapters.read_from_file(str(Path(moved) / "timeline.otio"))
    for clip in timeline.find_clips():
        assert (Path(moved) / clip.media_reference.target_url).is_file()


def test_a_plot_without_delivered_video_is_refused(tmp_path: Path):
    story, records = plot_records([2, 2, 2])
    with pytest.raises(AssemblyError, match="plot 0 has no delivered video"):
        build_timeline(tmp_path, story, records, Delivery())
