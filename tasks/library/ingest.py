"""Ingest one shard of a clip manifest: probe, split into shots, sample frames, embed.

`ClipIngestor` is a plain worker: its constructor loads the encoders once, `process` turns a
`ShardJob` into table rows plus quarantined items. It runs in-process or on a Ray actor
unchanged. Writing the rows is the caller's job, so a shard is written exactly once.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from story.tasks.errors import MediaError, StoryError
from story.tasks.library.manifest import ManifestRow
from story.tasks.library.media import VideoReader, make_clip_id, sample_indices, source_hash
from story.tasks.library.shots import Shot, detect_shots, split_range
from story.tasks.object_store import configure_fsspec


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


def make_shards(rows: list[ManifestRow], shard_size: int) -> list[ShardJob]:
    """Cut the manifest into consecutive shards whose ids depend only on their rows."""
    shards = []
    for offset in range(0, len(rows), shard_size):
        chunk = tuple(rows[offset : offset + shard_size])
        digest = hashlib.sha256()
        for row in chunk:
            digest.update(
                json.dumps([row.uri, row.start, row.end, row.caption], default=str).encode()
            )
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


class ClipIngestor:
    """Loads encoders once; turns manifest rows into clip-table rows."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from story.models.device import set_torch_threads
        from story.models.text_encoder import load_text_encoder
        from story.models.visual_encoder import load_visual_encoder
        from story.tasks.settings import Settings

        self.settings = Settings(**settings)
        configure_fsspec(self.settings.storage_options)
        set_torch_threads(self.settings.torch_threads)
        self.text_encoder = load_text_encoder("minilm", device=self.settings.device)
        self.visual_encoder = load_visual_encoder(self.settings)
        self._hashes: dict[str, str] = {}

    def _hash(self, uri: str) -> str:
        if uri not in self._hashes:
            self._hashes[uri] = source_hash(uri)
        return self._hashes[uri]

    def _candidates(self, row: ManifestRow) -> list[_Candidate]:
        """Probe the file, detect shots inside the row's range, read the sampled frames."""
        settings = self.settings
        with VideoReader(row.uri) as reader:
            info = reader.info
            first, last = split_range(info, row.start, row.end)
            shots = [
                Shot(
                    start_frame=max(s.start_frame, first),
                    end_frame=min(s.end_frame, last),
                    start=max(s.start_frame, first) / info.fps,
                    end=min(s.end_frame, last) / info.fps,
                )
                for s in detect_shots(reader)
                if s.end_frame > first and s.start_frame < last
            ]
            shots = [s for s in shots if s.end_frame > s.start_frame] or [
                Shot(first, last, first / info.fps, last / info.fps)
            ]
            sha = self._hash(row.uri)
            out = []
            for shot in shots:
                indices = sample_indices(
                    shot.start_frame, shot.end_frame, settings.frames, settings.stride
                )
                frames = reader.read(indices)
                out.append(
                    _Candidate(
                        row=row,
                        shot=shot,
                        clip_id=make_clip_id(sha, shot.start, shot.end),
                        sha=sha,
                        indices=indices,
                        # Decoded to prove the samples read; kept only for a visual encoder,
                        # else every 4K row of a shard would hold ~400 MB until it ends.
                        frames=frames if self.visual_encoder is not None else None,
                        info=info,
                        shot_count=len(shots),
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
            caption_vectors, result.embed_s = embedding.result()

        captions = [c.row.caption for c in candidates]
        visual_vectors = None
        if self.visual_encoder is not None and candidates:
            t0 = time.perf_counter()
            visual_vectors = self.visual_encoder.embed_clips([c.frames for c in candidates])
            result.embed_s += time.perf_counter() - t0

        now = datetime.now(UTC)
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
                "shard": job.shard_id,
                "ingested_at": now,
            }
            if visual_vectors is not None:
                row["visual_vector"] = visual_vectors[i].astype(np.float32).tolist()
            result.rows.append(row)
        return result


def _quarantine(row: ManifestRow, reason: str, detail: str) -> dict[str, Any]:
    return {"uri": row.uri, "line": row.line, "reason": reason, "detail": detail}


def shard_summary(result: ShardResult) -> dict[str, Any]:
    """A JSON-friendly record of a finished shard (no vectors)."""
    data = asdict(result)
    data["rows"] = len(result.rows)
    return data
