"""One settings object: env vars `STORY_*`, an optional config file, and CLI flags."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from story.tasks.library.canonical import is_export
from story.tasks.outputs.delivery import DEFAULT_RATE, DEFAULT_RETIME, check_retime, normalize_rate
from story.tasks.reproducible import relative_inside

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where the workspace, the clip library and the checkpoints live, and how work is run."""

    model_config = SettingsConfigDict(
        env_prefix="STORY_",
        env_file=None,
        extra="ignore",
        toml_file=None,
    )

    workspace: Path = Field(default=Path("workspace"), description="Root for caches and renders.")
    lancedb_uri: str | None = Field(
        default=None,
        description="LanceDB URI (local dir or s3://...); default <workspace>/lancedb.",
    )
    clips_table: str = "clips"
    depth_store_uri: str | None = Field(
        default=None,
        description="Depth store (local dir or s3://bucket/prefix, reached with storage_options); "
        "default <workspace>/depth.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Object-store options for LanceDB/fsspec (endpoint, keys); JSON in env.",
    )
    checkpoints: Path = Field(
        default=REPO_ROOT / "checkpoints", description="Folder of named model checkpoints."
    )
    checkpoint: str = Field(
        default="t2v-64f4-v3",
        description="Synthesis checkpoint a render uses unless told otherwise: a name under "
        "`checkpoints` (`t2v-64f4-v3`, the default; the older `t2v-64f4-v2`, `t2v-64f4`, "
        "`t2v-64`; `tiny` = t2v-tiny) or a folder.",
    )
    preset: str = Field(default="tiny", description="Model zoo preset.")
    depth_model: str = Field(
        default="tiny", description="Depth model: `tiny` or a local DPT / tiny folder."
    )
    fps: float = Field(
        default=8.0, gt=0, description="The model's frame rate: what its generated frames span."
    )
    delivery_rate: str = Field(
        default=DEFAULT_RATE,
        description="Editorial rate renders are delivered at: 23.976 | 24 | 25 | 30 (plots keep "
        "their durations; docs/editorial.md).",
    )
    retime: str = Field(
        default=DEFAULT_RETIME,
        description="How model frames reach the delivery rate: flow | blend | hold.",
    )
    max_plot_frames: int = Field(default=256, ge=1, description="Longest plot a story may ask.")
    open_clip_model: str | None = Field(
        default=None, description="open_clip architecture name, e.g. ViT-B-32."
    )
    open_clip_checkpoint: Path | None = Field(
        default=None, description="Local open_clip weights; enables visual embeddings."
    )
    video_text_model: str = Field(
        default="tiny",
        description="Video-text encoder for what clips show: `tiny` (bundled), a local "
        "video-text folder, or `none`; open_clip_checkpoint, when set, takes its place.",
    )
    motion_model: str = Field(
        default="tiny",
        description="Motion / camera classifier read at ingest: `tiny`, a local JSON, or `none`.",
    )
    shape_model: str = Field(
        default="tiny",
        description="Shape tagger read at ingest: `tiny` (bundled), a local folder, or `none`.",
    )
    frames: int = Field(default=16, ge=1, description="Frames sampled per clip.")
    stride: int = Field(default=8, ge=1, description="Frame stride when sampling a clip.")
    shard_size: int = Field(default=64, ge=1, description="Manifest rows per ingest shard.")
    ingest_max_side: int = Field(
        default=256,
        ge=0,
        description=(
            "Ingest decodes frames scaled so their longer side is at most this (its analyses"
            " work at 64 px); 0 decodes at the stored size."
        ),
    )
    ivf_pq_min_rows: int = Field(
        default=100_000, ge=256, description="Build an IVF-PQ vector index from this many rows."
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster address; None starts or joins a local one."
    )
    ray_workers: int = Field(default=2, ge=1, description="Actors per fan-out.")
    worker_idle_s: float = Field(
        default=600.0,
        ge=0,
        description="Warm synthesis workers (models loaded, kept between renders; shared by "
        "`story render` processes on a cluster) exit after this many idle seconds, freeing "
        "their CPU/GPU; 0 stops them after every render. `story workers stop` frees them now.",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="CPU threads per model worker (0 = torch's default). One per worker scales "
        "by adding workers and avoids thread oversubscription on shared cores.",
    )
    studio_api_port: int = Field(
        default=4300, ge=1, le=65535, description="`story studio`: Prefect API and UI port."
    )
    studio_ray_port: int = Field(
        default=6390, ge=1, le=65535, description="`story studio`: the Ray head's GCS port."
    )
    studio_ray_cpus: int = Field(default=2, ge=1, description="`story studio`: Ray head CPUs.")
    studio_database_url: str | None = Field(
        default=None,
        description="`story studio`: Prefect database URL (e.g. postgresql+asyncpg://...); "
        "default SQLite in <workspace>/studio.",
    )

    @field_validator("delivery_rate", mode="before")
    @classmethod
    def _delivery_rate(cls, value: object) -> str:
        return normalize_rate(value)

    @field_validator("retime")
    @classmethod
    def _retime(cls, value: str) -> str:
        return check_retime(value)

    @field_validator("ingest_max_side")
    @classmethod
    def _ingest_max_side(cls, value: int) -> int:
        if value == 1:
            raise ValueError("ingest_max_side must be 0 (the stored size) or at least 2 pixels")
        return value

    @property
    def library_uri(self) -> str:
        """The library as given: a LanceDB URI or a canonical export (what manifests record)."""
        return self.lancedb_uri or str(self.workspace / "lancedb")

    @property
    def lancedb(self) -> str:
        """The LanceDB URI to open; a canonical export (`*.parquet`) opens its restored cache."""
        uri = self.library_uri
        if is_export(uri):
            from story.tasks.library.canonical import materialize

            return materialize(
                uri,
                self.workspace / "cache" / "library",
                self.clips_table,
                ivf_pq_min_rows=self.ivf_pq_min_rows,
            )
        return uri

    @property
    def depth_store(self) -> str:
        return self.depth_store_uri or str(self.workspace / "depth")

    def resolved(self) -> dict:
        """JSON-friendly snapshot that rebuilds these settings (`Settings(**resolved)`), e.g. in
        a worker; the library is given as the user gave it (an export, not its local cache)."""
        data = self.model_dump(mode="json")
        data["lancedb_uri"] = self.library_uri
        return data

    def recorded(self) -> dict:
        """The settings as a manifest and a render request record them.

        An export is named with its content hash, so a render request on a changed export is a
        new request; paths inside this checkout are relative to it (`checkpoints`, not
        `/home/td/clone/checkpoints`), so two clones record the same settings.
        """
        data = self.resolved()
        if is_export(self.library_uri):
            from story.tasks.library.canonical import export_digest

            data["lancedb_export_sha256"] = export_digest(self.library_uri)
        for key, value in data.items():
            if isinstance(value, str) and os.path.isabs(value):
                data[key] = relative_inside(value, REPO_ROOT) or value
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
