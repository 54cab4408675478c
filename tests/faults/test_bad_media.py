"""Bad and odd media through the real `build_index` flow: one manifest, every fault at once.

Broken files are quarantined with a stable reason; odd but decodable ones (renamed container,
other codecs, odd sizes, variable frame rate, 4K) are indexed with their real geometry; the good
clips are all indexed and searchable rows, whatever else the manifest holds.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest

from story.flows.build_index import build_index
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest import ClipIngestor, make_shards
from story.tasks.library.manifest import ManifestRow
from story.tasks.settings import Settings
from tests.faults.conftest import TEST_FILES, Recorder
from tests.flows.library_fixture import build_library

pytestmark = pytest.mark.usefixtures("prefect_harness")

QUARANTINED = {
    "zero bytes": ("zero.mp4", "zero bytes"),
    "truncated": ("truncated.mp4", "truncated"),
    "random bytes": ("random.mp4", "undecodable"),
    "text named .mp4": ("text.mp4", "undecodable"),
    "unsupported codec": ("unknown_codec.webm", "unsupported codec"),
    "a single frame": ("single_frame.mp4", "too few frames"),
    "audio only": ("audio_only.mp4", "no video stream"),
    "missing file": ("missing.mp4", "missing file"),
    "a folder, not a file": ("folder.mp4", "missing file"),
}
# case -> (file, (width, height)) of files that must be indexed
INDEXED = {
    "wrong extension (mp4 bytes as .mkv)": ("cuts_as.mkv", (64, 64)),
    "other container/codec: VP9 WebM": ("vp9.webm", (64, 64)),
    "other container/codec: MJPEG AVI": ("mjpeg.avi", (64, 64)),
    "very large resolution (3840x2160)": ("large.mp4", (3840, 2160)),
    "odd dimensions (63x47)": ("odd.mp4", (63, 47)),
    "variable frame rate": ("vfr.mp4", (64, 64)),
}
COPIED = (
    "zero.mp4",
    "truncated.mp4",
    "random.mp4",
    "text.mp4",
    "single_frame.mp4",
    "audio_only.mp4",
    "vp9.webm",
    "mjpeg.avi",
    "large.mp4",
    "odd.mp4",
    "vfr.mp4",
)


def _unknown_codec(webm: bytes) -> bytes:
    """The VP9 WebM with its Matroska codec id renamed to one no decoder knows."""
    assert webm.count(b"V_VP9") == 1
    return webm.replace(b"V_VP9", b"V_ZZ9")


@pytest.fixture(scope="module")
def mixed_library(tmp_path_factory: pytest.TempPathFactory):
    """Three good miniature-world clips plus every bad and odd file, in one JSONL manifest."""
    lib = build_library(tmp_path_factory.mktemp("mixed"), n_good=3, with_bad=False)
    media = lib.root / "media"
    for name in COPIED:
        shutil.copyfile(TEST_FILES / name, media / name)
    shutil.copyfile(TEST_FILES / "cuts.mp4", media / "cuts_as.mkv")
    (media / "unknown_codec.webm").write_bytes(
        _unknown_codec((TEST_FILES / "vp9.webm").read_bytes())
    )
    (media / "folder.mp4").mkdir()
    names = [n for n, _ in QUARANTINED.values()] + [n for n, _ in INDEXED.values()]
    rows = [{k: v for k, v in g.items() if k != "paraphrase"} for g in lib.good]
    rows += [{"uri": f"media/{n}", "caption": f"fault case {n}", "source": "faults"} for n in names]
    lib.manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return lib


def test_every_bad_file_is_quarantined_with_its_reason_and_the_rest_indexed(
    mixed_library, tmp_path: Path, fault: Recorder
) -> None:
    settings = Settings(workspace=tmp_path / "ws", shard_size=4)
    summary = build_index(str(mixed_library.manifest), settings.resolved(), use_ray=False)

    reasons = {Path(q["uri"]).name: q["reason"] for q in summary["quarantined"]}
    table = ClipIndex(settings.lancedb).rows()
    geometry = {
        Path(uri).name: (int(w), int(h))
        for uri, w, h in zip(table["uri"], table["width"], table["height"], strict=True)
    }
    held = []
    for case, (name, reason) in QUARANTINED.items():
        observed = f"quarantined: {reasons[name]}" if name in reasons else "not quarantined"
        held.append(fault(f"media: {case}", f"quarantined: {reason}", observed))
    for case, (name, size) in INDEXED.items():
        if name in geometry:
            observed = f"indexed {geometry[name][0]}x{geometry[name][1]}"
        else:
            observed = f"quarantined: {reasons.get(name, '?')}"
        held.append(fault(f"media: {case}", f"indexed {size[0]}x{size[1]}", observed))
    good = {Path(g["uri"]).name for g in mixed_library.good}
    held.append(
        fault(
            "media: good clips beside the bad ones",
            f"all {len(good)} indexed",
            f"all {len(good)} indexed"
            if good <= geometry.keys()
            else f"indexed {sorted(geometry)}",
        )
    )

    assert all(held)
    assert summary["failed_shards"] == []
    assert set(reasons) == {name for name, _ in QUARANTINED.values()}
    assert set(geometry) == good | {name for name, _ in INDEXED.values()}
    assert summary["rows"] == len(table)
    assert list(table["uri"].map(lambda u: Path(u).name)).count("cuts_as.mkv") == 3
    assert table["clip_id"].is_unique
    quarantine_lines = sorted(q["line"] for q in summary["quarantined"])
    assert quarantine_lines == list(range(4, 4 + len(QUARANTINED)))


def test_a_shard_of_4k_clips_holds_one_clip_of_frames_at_a_time(
    settings: Settings, fault: Recorder
) -> None:
    ingestor = ClipIngestor(settings.resolved())

    def peak_bytes(rows: int) -> int:
        shard = make_shards([_row(TEST_FILES / "large.mp4", i) for i in range(rows)], rows)[0]
        tracemalloc.start()
        try:
            result = ingestor.process(shard)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(result.rows) == rows
        return peak

    one, three = peak_bytes(1), peak_bytes(3)
    fault(
        "media: a shard of three 3840x2160 clips",
        "peak memory of one clip (within 25%)",
        f"peak {three / 2**20:.0f} MB for three vs {one / 2**20:.0f} MB for one",
        held=three <= 1.25 * one,
    )
    assert three <= 1.25 * one


def _row(path: Path, line: int) -> ManifestRow:
    return ManifestRow(str(path), "4k blocks", None, None, "faults", "", line)
