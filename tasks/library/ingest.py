"""Ingest one shard of a clip manifest: probe, split into shots, sample frames, embed, measure.

`ClipIngestor` is a plain worker: its constructor loads the encoders once, `process` turns a
`ShardJob` into table rows plus quarantined items. It runs in-process or on a Ray actor
unchanged. Writing the rows is the caller's job, so a shard is written exactly once.

Per clip it stores the caption vector, the video-text vector of what the clip shows (when a
visual encoder is configured: the bundled `video-text-tiny` by default), the main object's shape
probabilities (the shape tagger, `shape-tiny`, where configured; else what the visual vector reads
zero-shot), the motion and camera move measured from the sampled frames
(`story.tasks.library.motion`), and the slots the caption states (parsed once here, read by
ranking). `timings` says where the time went.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from story.tasks.errors import MediaError, StoryError
from story.tasks.library.index import CAPTION_SLOTS
from story.tasks.library.manifest import ManifestRow
from story.tasks.library.media import VideoReader, make_clip_id, sample_indices, source_hash
from story.tasks.library.motion import clip_motion, load_motion_classifier
from story.tasks.library.query_intent import parse_query
from story.tasks.library.shots import Shot, detect_shots, split_range
from story.tasks.object_store import configure_fsspec, is_remote
from story.tasks.reproducible import relative_inside, stamp_time
from story.tasks.world.miniworld import SHAPES

INGEST_TEXT_ENCODER = "minilm"
"""The text encoder whose vectors fill the clip table's text column (its width sets the table's)."""


@dataclass(frozen=True)
class ShardJob:
    """A fixed slice of the manifest; its id hashes its rows, so appends leave it unchanged."""

    shard_id: str
    rows: tuple[ManifestRow, ...]


@dataclass
class ShardResult:
    """What one shard produced: rows ready for the clip table, quarantined items, timings."""

    shard_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    read_s: float = 0.0
    embed_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def _shard_uri(uri: str, base: str | None) -> str:
    """`uri` relative to `base` when it lies under it: a shard's id must not name the machine."""
    if base is None or is_remote(uri) or not os.path.isabs(uri):
        return uri
    return relative_inside(uri, base) or uri


def make_shards(
    rows: list[ManifestRow], shard_size: int, base: str | None = None
) -> list[ShardJob]:
    """Cut the manifest into consecutive shards whose ids depend only on their rows.

    Media under `base` (the manifest's folder) enter the id by their path relative to it, so
    the same manifest gives the same shard ids, and rows, in any clone or checkout location.
    """
    shards = []
    for offset in range(0, len(rows), shard_size):
        chunk = tuple(rows[offset : offset + shard_size])
        digest = hashlib.sha256()
        for row in chunk:
            key = [_shard_uri(row.uri, base), row.start, row.end, row.caption]
            digest.update(json.dumps(key, default=str).encode())
        shards.append(ShardJob(shard_id=digest.hexdigest()[:20], rows=chunk))
    return shards


@dataclass
class _Candidate:
    row: ManifestRow
    shot: Shot
    clip_id: str
    sha: str
    indices: list[int]
    frames: np.ndarray | None
    info: Any
    shot_count: int
    source_shot: str
    motion: dict[str, Any]
    shape_probs: np.ndarray | None = None


SHAPE_PROMPTS = tuple(f"a {shape}" for shape in SHAPES)


def shape_prompt_vectors(encoder: Any) -> tuple[np.ndarray, float]:
    """The visual encoder's text vectors of "a sphere", "a cube", ... and its logit scale."""
    scale = float(getattr(encoder, "logit_scale", 100.0))
    return encoder.embed_text(list(SHAPE_PROMPTS)), scale


def zero_shot(vector: np.ndarray, prompts: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over the prompts of the clip vector's scaled cosines: the shape it reads."""
    logits = scale * (prompts @ vector)
    weights = np.exp(logits - logits.max())
    return (weights / weights.sum()).astype(np.float32)


def caption_slots(caption: str) -> dict[str, str | None]:
    """The shape, motion, camera and ground a caption states (None where it says nothing)."""
    intent = parse_query(caption) if caption and caption.strip() else None
    values = (
        (intent.shape, intent.motion, intent.camera, intent.background) if intent else (None,) * 4
    )
    return dict(zip(CAPTION_SLOTS, values, strict=True))


class ClipIngestor:
    """Loads encoders once; turns manifest rows into clip-table rows."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from story.models.device import set_torch_threads
        from story.models.shape_tagger import ShapeTaggerRunner, shape_tagger_folder
        from story.models.text_encoder import load_text_encoder
        from story.models.visual_encoder import load_visual_encoder
        from story.tasks.settings import Settings

        self.settings = Settings(**settings)
        configure_fsspec(self.settings.storage_options)
        set_torch_threads(self.settings.torch_threads)
        self.text_encoder = load_text_encoder(INGEST_TEXT_ENCODER, device=self.settings.device)
        self.visual_encoder = load_visual_encoder(self.settings)
        self.motion_classifier = load_motion_classifier(self.settings)
        self.shape_prompts = (
            shape_prompt_vectors(self.visual_encoder) if self.visual_encoder is not None else None
        )
        tagger = shape_tagger_folder(self.settings)
        self.shape_tagger = ShapeTaggerRunner(tagger) if tagger is not None else None
        self._hashes: dict[str, str] = {}
        self._clock: dict[str, float] = {}

    def _tick(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self._clock[name] = self._clock.get(name, 0.0) + now - since
        return now

    def _hash(self, uri: str) -> str:
        if uri not in self._hashes:
            self._hashes[uri] = source_hash(uri)
        return self._hashes[uri]

    def _candidates(self, row: ManifestRow) -> list[_Candidate]:
        """Probe the file, detect shots inside the row's range, read the sampled frames."""
        settings = self.settings
        with VideoReader(row.uri, max_side=settings.ingest_max_side or None) as reader:
            info = reader.info
            first, last = split_range(info, row.start, row.end)
            shots = [
                (
                    Shot(
                        start_frame=max(s.start_frame, first),
                        end_frame=min(s.end_frame, last),
                        start=max(s.start_frame, first) / info.fps,
                        end=min(s.end_frame, last) / info.fps,
                    ),
                    s.start_frame,
                )
                for s in detect_shots(reader)
                if s.end_frame > first and s.start_frame < last
            ]
            shots = [(s, origin) for s, origin in shots if s.end_frame > s.start_frame] or [
                (Shot(first, last, first / info.fps, last / info.fps), first)
            ]
            sha = self._hash(row.uri)
            out = []
            for shot, origin in shots:
                indices = sample_indices(
                    shot.start_frame, shot.end_frame, settings.frames, settings.stride
                )
                t0 = time.perf_counter()
                frames = reader.read(indices)
                t0 = self._tick("decode_s", t0)
                motion = clip_motion(frames, self.motion_classifier)
                t0 = self._tick("motion_s", t0)
                small = (
                    self.visual_encoder.prepare(frames)
                    if self.visual_encoder is not None and hasattr(self.visual_encoder, "prepare")
                    else frames
                )
                t0 = self._tick("visual_prepare_s", t0)
                shape_probs = self.shape_tagger.probs([small])[0] if self.shape_tagger else None
                self._tick("shape_s", t0)
                out.append(
                    _Candidate(
                        row=row,
                        shot=shot,
                        clip_id=make_clip_id(sha, shot.start, shot.end),
                        sha=sha,
                        indices=indices,
                        # Kept only for a visual encoder, and at its input size: full 4K frames
                        # for every row of a shard would hold ~400 MB until the shard ends.
                        frames=small if self.visual_encoder is not None else None,
                        info=info,
                        shot_count=len(shots),
                        source_shot=f"{sha[:16]}:{origin}",
                        motion=motion,
                        shape_probs=shape_probs,
                    )
                )
            return out

    def _embed_captions(self, captions: list[str]) -> tuple[dict[str, np.ndarray], float]:
        t0 = time.perf_counter()
        vectors = self.text_encoder.embed_sentences(captions) if captions else []
        return dict(zip(captions, vectors, strict=True)), time.perf_counter() - t0

    def process(self, job: ShardJob) -> ShardResult:
        """Ingest every row of the shard; a row that fails is quarantined, the rest go on.

        Captions are known up front, so they are embedded on a second thread while the media
        decodes: the text encoder's time hides behind decoding instead of adding to it.
        """
        result = ShardResult(shard_id=job.shard_id)
        self._clock = {}
        candidates: list[_Candidate] = []
        unique_captions = list(dict.fromkeys(row.caption for row in job.rows))
        with ThreadPoolExecutor(max_workers=1) as pool:
            embedding = pool.submit(self._embed_captions, unique_captions)
            t0 = time.perf_counter()
            for row in job.rows:
                try:
                    candidates.extend(self._candidates(row))
                except MediaError as exc:
                    result.quarantined.append(_quarantine(row, exc.reason, str(exc)))
                except StoryError as exc:
                    result.quarantined.append(_quarantine(row, "invalid range", str(exc)))
                except Exception as exc:  # noqa: BLE001 - any decoder failure quarantines one item
                    result.quarantined.append(_quarantine(row, "undecodable", repr(exc)))
            result.read_s = time.perf_counter() - t0
            caption_vectors, caption_s = embedding.result()

        captions = [c.row.caption for c in candidates]
        visual_vectors = None
        visual_s = 0.0
        if self.visual_encoder is not None and candidates:
            t0 = time.perf_counter()
            visual_vectors = self.visual_encoder.embed_clips([c.frames for c in candidates])
            visual_s = time.perf_counter() - t0
        result.embed_s = caption_s + visual_s
        result.timings = {
            "read_s": result.read_s,
            "decode_s": self._clock.get("decode_s", 0.0),
            "motion_s": self._clock.get("motion_s", 0.0),
            "visual_prepare_s": self._clock.get("visual_prepare_s", 0.0),
            "shape_s": self._clock.get("shape_s", 0.0),
            "caption_embed_s": caption_s,
            "visual_embed_s": visual_s,
        }

        slots = {caption: caption_slots(caption) for caption in set(captions)}
        now = stamp_time()
        for i, c in enumerate(candidates):
            info = c.info
            row = {
                "clip_id": c.clip_id,
                "uri": c.row.uri,
                "source_hash": c.sha,
                "start": float(c.shot.start),
                "end": float(c.shot.end),
                "duration": float(c.shot.end - c.shot.start),
                "fps": float(info.fps),
                "width": int(info.width),
                "height": int(info.height),
                "aspect": float(info.width) / float(info.height),
                "frames": int(c.shot.end_frame - c.shot.start_frame),
                "frame_indices": [int(x) for x in c.indices],
                "source": c.row.source,
                "license": c.row.license,
                "caption": captions[i],
                "text_vector": caption_vectors[captions[i]].astype(np.float32).tolist(),
                "source_shot": c.source_shot,
                **c.motion,
                **slots[captions[i]],
                "shard": job.shard_id,
                "ingested_at": now,
            }
            if visual_vectors is not None:
                row["visual_vector"] = visual_vectors[i].astype(np.float32).tolist()
                row["shape_probs"] = zero_shot(visual_vectors[i], *self.shape_prompts).tolist()
            if c.shape_probs is not None:
                row["shape_probs"] = c.shape_probs.tolist()
            result.rows.append(row)
        return result


def _quarantine(row: ManifestRow, reason: str, detail: str) -> dict[str, Any]:
    return {"uri": row.uri, "line": row.line, "reason": reason, "detail": detail}


def shard_summary(result: ShardResult) -> dict[str, Any]:
    """A JSON-friendly record of a finished shard (no vectors)."""
    data = asdict(result)
    data["rows"] = len(result.rows)
    return data
