"""Editorial export round trips: every format written and read back by OTIO's own adapters.

Each cut read back must match the render's: clip count, order, durations, record in/out from
the record start, names within the format's limits, media on the delivered files, lineage.
"""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest

from story.tasks.outputs.delivery import Delivery
from story.tasks.outputs.errors import AssemblyError
from story.tasks.outputs.export import FORMATS, export_render, fit_name
from story.tasks.outputs.timecode import timecode_frames
from tests.tasks.outputs.render_fixture import make_render

LENGTHS = (8, 6, 11)


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished render at 24 fps, plot 2 with two candidates side by side."""
    return make_render(tmp_path_factory.mktemp("renders"), LENGTHS, candidates_at=1)


def read_back(path: str, fmt: str, rate: float) -> otio.schema.Timeline:
    options = {"rate": rate} if fmt == "edl" else {}
    return otio.adapters.read_from_file(path, adapter_name=FORMATS[fmt].adapter, **options)


def record_ranges(timeline: otio.schema.Timeline) -> list[tuple[int, int]]:
    """Record in/out frames of each clip: the timeline's start plus the clip's place on it (the
    EDL adapter keeps a record start as a negative track offset instead)."""
    (track,) = timeline.video_tracks()
    start = timeline.global_start_time.value if timeline.global_start_time else 0
    offset = track.source_range.start_time.value if track.source_range else 0
    ranges = []
    for clip in track.find_clips():
        placed = clip.range_in_parent()
        first = round(start - offset + placed.start_time.value)
        ranges.append((first, first + round(placed.duration.value)))
    return ranges


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_round_trips_the_cut(render: Path, tmp_path: Path, fmt: str):
    manifest = json.loads((render / "manifest.json").read_text())
    result = export_render(render, fmt, tmp_path / f"cut{FORMATS[fmt].suffix}")
    assert result["clips"] == 3 and result["rate"] == "24"
    cut = read_back(result["path"], fmt, 24)

    clips = list(cut.find_clips())
    limits = FORMATS[fmt].names
    expected_names = [
        fit_name(f"plot {p['index'] + 1}: {p['text']}", limits.clip, limits.ascii_only)
        for p in manifest["plots"]
    ]
    assert [c.name for c in clips] == expected_names
    assert all(limits.clip is None or len(c.name) <= limits.clip for c in clips)
    frames = [3 * n for n in LENGTHS]
    assert [round(c.source_range.duration.value) for c in clips] == frames
    assert all(c.source_range.duration.rate == pytest.approx(24) for c in clips)
    start = 3600 * 24
    assert record_ranges(cut) == [
        (start, start + 24),
        (start + 24, start + 42),
        (start + 42, start + 75),
    ]
    delivered = [p["delivered"]["video"] for p in manifest["plots"]]
    for clip, video in zip(clips, delivered, strict=True):
        url = clip.media_reference.target_url
        # OTIOZ carries the files inside the bundle, under media/
        assert url.endswith(f"media/{Path(video).name}" if fmt == "otioz" else video), url


def test_edl_reels_fit_eight_characters_and_carry_lineage(render: Path, tmp_path: Path):
    result = export_render(render, "edl", tmp_path / "cut.edl")
    text = Path(result["path"]).read_text()
    assert "01:00:00:00 01:00:01:00" in text
    cut = read_back(result["path"], "edl", 24)
    reels = [c.metadata["cmx_3600"]["reel"] for c in cut.find_clips()]
    prefix = render.name[:4].upper()
    assert reels == [f"{prefix}P001", f"{prefix}P002", f"{prefix}P003"]
    comments = [c.metadata["cmx_3600"]["comments"] for c in cut.find_clips()]
    assert f"STORY RENDER: {render.name}" in comments[0]
    assert "STORY CLIP ID: clip1" in comments[1]
    assert f"STORY CHECKPOINT: tiny@{'c' * 16}" in comments[0]
    assert f"STORY CONCEPTS: bob@{'b' * 16}" in comments[0]
    assert "STORY SEED: 102" in comments[2]


def test_fcp_xml_and_aaf_keep_lineage_where_they_have_room(render: Path, tmp_path: Path):
    xml = read_back(export_render(render, "fcp_xml", tmp_path / "cut.xml")["path"], "fcp_xml", 24)
    first = next(iter(xml.find_clips()))
    assert first.metadata["fcp_xml"]["comments"]["mastercomment2"] == "STORY CLIP ID: clip0"
    assert [m.name for m in first.markers] == ["plot 1"]
    assert "STORY SEED: 100" in first.markers[0].metadata["fcp_xml"]["comment"]

    aaf = read_back(export_render(render, "aaf", tmp_path / "cut.aaf")["path"], "aaf", 24)
    comments = [c.metadata["AAF"]["UserComments"] for c in aaf.find_clips()]
    assert [c["STORY CLIP ID"] for c in comments] == ["clip0", "clip1", "clip2"]
    assert all(c["STORY RENDER"] == render.name for c in comments)

    full = read_back(export_render(render, "otio", tmp_path / "cut.otio")["path"], "otio", 24)
    lineage = next(iter(full.find_clips())).metadata["story"]["lineage"]
    assert lineage["concepts"] == {"bob": "b" * 64} and lineage["checkpoint"] == "tiny"


def test_otioz_bundles_the_delivered_media(render: Path, tmp_path: Path):
    import zipfile

    path = export_render(render, "otioz", tmp_path / "cut.otioz")["path"]
    names = zipfile.ZipFile(path).namelist()
    assert sorted(n for n in names if n.startswith("media/")) == [
        f"media/plot_{i:03d}.mp4" for i in range(3)
    ]


@pytest.mark.parametrize(("rate", "start"), [("23.976", "00:59:58:00"), ("25", "10:00:00:00")])
def test_record_start_and_rate_reach_every_format(tmp_path: Path, rate: str, start: str):
    folder = make_render(tmp_path / "renders", (8, 8, 8), delivery=Delivery(rate))
    fps = Delivery(rate).fps
    first = timecode_frames(start, fps)
    for fmt in ("edl", "fcp_xml", "aaf"):
        result = export_render(folder, fmt, tmp_path / f"cut{FORMATS[fmt].suffix}", start)
        cut = read_back(result["path"], fmt, float(fps))
        ranges = record_ranges(cut)
        assert ranges[0][0] == first, fmt
        assert ranges[-1][1] - first == 3 * (24 if rate == "23.976" else 25), fmt


def test_bad_requests_are_clear_errors(render: Path, tmp_path: Path):
    with pytest.raises(AssemblyError, match="export format 'mov'"):
        export_render(render, "mov", tmp_path / "cut.mov")
    with pytest.raises(AssemblyError, match="timecode '1:00:00'"):
        export_render(render, "edl", tmp_path / "cut.edl", record_start="1:00:00")
    assert not list(tmp_path.iterdir())


def test_missing_media_is_named_and_nothing_is_written(tmp_path: Path):
    folder = make_render(tmp_path / "renders", (4, 4, 4))
    (folder / "delivery" / "plot_001.mp4").unlink()
    with pytest.raises(AssemblyError, match="plot_001.mp4: the media of 'plot 2"):
        export_render(folder, "fcp_xml", tmp_path / "out" / "cut.xml")
    assert not (tmp_path / "out").exists()


def test_a_render_made_before_delivery_rates_is_refused_with_the_way_out(tmp_path: Path):
    folder = make_render(tmp_path / "renders", (4, 4, 4))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["inputs"]["delivery"]
    from story.tasks.hashing import render_id

    manifest["render_id"] = render_id(manifest["inputs"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssemblyError, match="made before delivery rates.*render the story again"):
        export_render(folder, "edl", tmp_path / "cut.edl")
