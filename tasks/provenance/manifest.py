"""The render manifest: what a render is made of, as a validated schema-1 JSON document.

`manifest.json` is written by the render flow into `renders/<render_id>/`::

    {
      "schema": 1,
      "render_id": "<render_id(inputs)>",
      "status": "complete",                   # only complete renders are registered
      "created": "2026-11-22T05:00:00+00:00",
      "inputs": {...},                        # exactly what render_id() hashed: story hash,
                                              # resolved plots, seeds, params, checkpoint and
                                              # concept hashes, clip ids, library table version
      "story": {"source": "stories/x.yaml", "sha256": "<Story.content_hash()>",
                "title": "...", "script": Story.to_dict()},
      "environment": environment_info(),      # git commit + dirty flag, package versions, device
      "settings": Settings.recorded(),
      "checkpoints": [{"name": "tiny", "path": "checkpoints/tiny", "sha256": "<sha256_tree>",
                       "dvc_md5": "<dvc_hash> or null"}],
      "concepts": [{"name": "bob", "ref": "concepts/bob", "sha256": "...", "dvc_md5": null}],
      "library": {"uri": "...", "table": "clips", "version": 12, "manifest_dvc_md5": "..."},
      "plots": [{"index": 0, "text": "...", "query": "...", "prompt": "...", "seed": 7,
                 "frames": 16, "clip_id": "...", "clip_uri": "...", "clip_source_sha256": "...",
                 "clip_start": 0.0, "clip_end": 2.0, "depth_key": "...", "params": {...},
                 "video": "plots/plot_000.mp4", "frames_sha256": "..."}],
      "outputs": {"video": "story.mp4", "storyboard": "storyboard.html",
                  "timeline": "timeline.otio"},
      "timings": {"retrieve_s": 0.1, "...": 0.0}
    }

`RenderManifest` (pydantic) is the schema: required are schema, render_id, status,
story.sha256, plots (each with an integer index) and outputs; the rest is optional but typed,
and unknown keys are kept, so newer writers stay readable. Output and plot video paths must be
relative and stay inside the render folder. The model validates; the file is the plain dict as
written (sorted keys, indent 2), so its bytes do not depend on the model. Checkpoints and
concepts are resolved by name through the settings and checked against their pinned sha256,
never opened by a path taken from a manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from story.tasks import atomic
from story.tasks.errors import StoryError
from story.tasks.hashing import render_id, sha256_tree, to_plain
from story.tasks.provenance.dvc_lookup import dvc_hash
from story.tasks.reproducible import reproducible_build, stamp_time
from story.tasks.script.paths import safe_relpath
from story.tasks.script.story import Story, StoryScriptError
from story.tasks.settings import REPO_ROOT

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class LineageError(StoryError):
    """A manifest or the lineage registry is unusable: names the file and the problem."""


def _inside_render(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        safe_relpath(value, field, "", 0)
    except StoryScriptError as exc:
        raise ValueError(f"{exc.problem} (render files stay inside the render folder)") from exc
    return value


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StoryRecord(_Open):
    """The story a render was made from: its content hash, source and (optionally) the script."""

    sha256: str
    source: str | None = None
    title: str | None = None
    script: dict[str, Any] | None = None


class PinnedAsset(_Open):
    """A checkpoint or concept pack as pinned: name, where it was (`path` / `ref`), hashes."""

    name: str | None = None
    sha256: str | None = None
    dvc_md5: str | None = None


class LibraryRecord(_Open):
    """The clip library table and the version the render read."""

    uri: str | None = None
    table: str = "clips"
    version: int | None = None


class PlotEntry(_Open):
    """One rendered plot; `video` is relative to the render folder."""

    index: StrictInt
    video: str | None = None

    @field_validator("video")
    @classmethod
    def _video_inside(cls, value: str | None) -> str | None:
        return _inside_render(value, "video")


class RenderManifest(_Open):
    """A schema-1 render manifest."""

    schema_version: Literal[1] = Field(alias="schema")
    render_id: str = Field(pattern=r"^[A-Za-z0-9]+$")
    status: str
    created: str | None = None
    inputs: dict[str, Any] | None = None
    story: StoryRecord
    environment: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    checkpoints: list[PinnedAsset] = []
    concepts: list[PinnedAsset] = []
    library: LibraryRecord | None = None
    plots: list[PlotEntry] = Field(min_length=1)
    outputs: dict[str, str | list[str | None] | None]
    timings: dict[str, float] = {}

    @field_validator("outputs")
    @classmethod
    def _outputs_inside(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            for path in item if isinstance(item, list) else [item]:
                _inside_render(path, f"outputs.{key}")
        return value

    @model_validator(mode="after")
    def _id_is_the_hash_of_inputs(self) -> RenderManifest:
        if self.inputs is not None and render_id(self.inputs) != self.render_id:
            raise ValueError("render_id does not match the hash of inputs")
        return self


def _first_problem(error: ValidationError) -> str:
    detail = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in detail["loc"])
    problem = str(detail["msg"]).removeprefix("Value error, ")
    return f"{where}: {problem}" if where else problem


def validate_manifest(manifest: Mapping[str, Any], where: str = "manifest") -> RenderManifest:
    """The manifest as a `RenderManifest`; LineageError names the first part at fault."""
    if not isinstance(manifest, Mapping):
        raise LineageError(f"{where}: must be a JSON object")
    try:
        return RenderManifest.model_validate(dict(manifest))
    except ValidationError as exc:
        raise LineageError(f"{where}: {_first_problem(exc)}") from exc


def describe_asset(
    name: str,
    path: str | os.PathLike[str],
    *,
    key: str = "path",
    sha256: str | None = None,
    repo: str | Path | None = None,
) -> dict[str, Any]:
    """A checkpoint or concept pack as the manifest pins it: name, where, sha256, DVC md5.

    Pass `sha256` when it is already known (e.g. remembered by the workspace hash cache).
    """
    target = Path(path)
    if not target.exists():
        raise LineageError(f"{target}: {name!r} does not exist")
    root = (Path(repo) if repo else REPO_ROOT).resolve()
    resolved = target.resolve()
    shown = (
        resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
    )
    return {
        "name": name,
        key: shown,
        "sha256": sha256 if sha256 is not None else sha256_tree(target),
        "dvc_md5": dvc_hash(target, repo=root),
    }


def build_manifest(
    *,
    inputs: Mapping[str, Any],
    story: Story,
    plots: list[dict[str, Any]],
    outputs: Mapping[str, Any],
    checkpoints: list[dict[str, Any]] | None = None,
    concepts: list[dict[str, Any]] | None = None,
    library: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    status: str = "complete",
) -> dict[str, Any]:
    """A schema-1 manifest; its render_id is `render_id(inputs)`."""
    if environment is None:
        from story.tasks.provenance.environment import environment_info

        environment = environment_info()
    manifest = {
        "schema": SCHEMA_VERSION,
        "render_id": render_id(inputs),
        "status": status,
        "created": stamp_time().isoformat(timespec="seconds"),
        "inputs": to_plain(inputs),
        "story": {
            "source": story.source,
            "sha256": story.content_hash(),
            "title": story.title,
            "script": story.to_dict(),
        },
        "environment": dict(environment),
        "settings": dict(settings or {}),
        "checkpoints": list(checkpoints or []),
        "concepts": list(concepts or []),
        "library": dict(library) if library is not None else None,
        "plots": plots,
        "outputs": dict(outputs),
        # A reproducible build (SOURCE_DATE_EPOCH) records no durations: they differ every run.
        "timings": {} if reproducible_build() else dict(timings or {}),
    }
    validate_manifest(manifest)
    return to_plain(manifest)


def write_manifest(out_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Validate and write `out_dir/manifest.json` atomically (temp file, fsync, rename)."""
    path = Path(out_dir) / MANIFEST_NAME
    validate_manifest(manifest, str(path))
    try:
        text = json.dumps(to_plain(manifest), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LineageError(f"{path}: not JSON-serialisable: {exc}") from exc
    try:
        atomic.write_text(path, text + "\n")
    except OSError as exc:
        raise LineageError(f"{path}: cannot write the manifest: {exc.strerror or exc}") from exc
    return path


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a manifest (a render folder or its manifest.json)."""
    file = Path(path)
    if file.is_dir():
        file = file / MANIFEST_NAME
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LineageError(f"{file}: cannot read the manifest: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LineageError(f"{file}: not a JSON manifest: {exc}") from exc
    validate_manifest(manifest, str(file))
    return manifest
