"""Lineage: the render manifest (what a render is made of) and a registry of asset -> renders.

`manifest.json` (schema 1) is written by the render flow into `renders/<render_id>/`::

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
      "settings": Settings.resolved(),
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

Required: schema, render_id, status, story.sha256, plots (each with index), outputs. The
rest is optional but, when present, is what the registry indexes. Output and plot video paths
must be relative and stay inside the render folder; checkpoints and concepts are resolved by
name through the settings and checked against their pinned sha256, never opened by a path
taken from a manifest.

`LineageRegistry` keeps one JSON line per (render_id, asset_kind, asset_id) edge in
`<workspace>/lineage/edges.jsonl`, appended under an exclusive `flock`, so concurrent renders
never interleave or lose rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from story.tasks.errors import StoryError
from story.tasks.hashing import render_id, sha256_tree, to_plain
from story.tasks.script.parse import Story, StoryScriptError, safe_relpath

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PACKAGES = (
    "story-pipeline",
    "torch",
    "diffusers",
    "transformers",
    "lancedb",
    "ray",
    "prefect",
    "dvc",
    "numpy",
    "av",
    "opentimelineio",
)
_REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "Asset",
    "LineageError",
    "LineageRegistry",
    "build_manifest",
    "describe_asset",
    "dvc_hash",
    "environment_info",
    "manifest_assets",
    "read_manifest",
    "render_id",
    "validate_manifest",
    "write_manifest",
]


class LineageError(StoryError):
    """A manifest or the lineage registry is unusable: names the file and the problem."""


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def environment_info(device: str | None = None, repo: str | Path | None = None) -> dict[str, Any]:
    """Git commit (+ dirty flag), Python and key package versions, and the compute device."""
    root = Path(repo) if repo else _REPO_ROOT
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if device is None:
        from story.models.device import pick_device

        device = str(pick_device("auto"))
    return {
        "git": {"commit": commit, "dirty": bool(status) if commit else None},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
    }


def _dvc_outs(document: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(document, Mapping):
        return
    outs = document.get("outs")
    if isinstance(outs, list):
        yield from (o for o in outs if isinstance(o, Mapping))
    stages = document.get("stages")
    if isinstance(stages, Mapping):
        for stage in stages.values():
            yield from _dvc_outs(stage)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def dvc_hash(path: str | os.PathLike[str], repo: str | Path | None = None) -> str | None:
    """The md5 DVC recorded for a tracked path (its `.dvc` file or a `dvc.lock` out), else None."""
    target = Path(path).resolve()
    sidecar = target.with_name(target.name + ".dvc")
    if sidecar.is_file():
        for out in _dvc_outs(_load_yaml(sidecar)):
            if (sidecar.parent / str(out.get("path", ""))).resolve() == target and out.get("md5"):
                return str(out["md5"])
    stop = Path(repo).resolve() if repo else _REPO_ROOT
    for folder in [target.parent, *target.parent.parents]:
        lock = folder / "dvc.lock"
        if lock.is_file():
            for out in _dvc_outs(_load_yaml(lock)):
                if (folder / str(out.get("path", ""))).resolve() == target and out.get("md5"):
                    return str(out["md5"])
        if folder == stop:
            break
    return None


def describe_asset(
    name: str, path: str | os.PathLike[str], *, key: str = "path", repo: str | Path | None = None
) -> dict[str, Any]:
    """A checkpoint or concept pack as the manifest pins it: name, where, sha256, DVC md5."""
    target = Path(path)
    if not target.exists():
        raise LineageError(f"{target}: {name!r} does not exist")
    root = (Path(repo) if repo else _REPO_ROOT).resolve()
    resolved = target.resolve()
    shown = (
        resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
    )
    return {
        "name": name,
        key: shown,
        "sha256": sha256_tree(target),
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
    manifest = {
        "schema": SCHEMA_VERSION,
        "render_id": render_id(inputs),
        "status": status,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": to_plain(inputs),
        "story": {
            "source": story.source,
            "sha256": story.content_hash(),
            "title": story.title,
            "script": story.to_dict(),
        },
        "environment": dict(environment) if environment is not None else environment_info(),
        "settings": dict(settings or {}),
        "checkpoints": list(checkpoints or []),
        "concepts": list(concepts or []),
        "library": dict(library) if library is not None else None,
        "plots": plots,
        "outputs": dict(outputs),
        "timings": dict(timings or {}),
    }
    validate_manifest(manifest)
    return to_plain(manifest)


def validate_manifest(manifest: Mapping[str, Any], where: str = "manifest") -> None:
    """Raise LineageError naming the first missing or malformed required part."""

    def need(ok: bool, problem: str) -> None:
        if not ok:
            raise LineageError(f"{where}: {problem}")

    need(isinstance(manifest, Mapping), "must be a JSON object")
    need(manifest.get("schema") == SCHEMA_VERSION, f"schema must be {SCHEMA_VERSION}")
    rid = manifest.get("render_id")
    need(isinstance(rid, str) and rid.isalnum(), "render_id must be an alphanumeric string")
    need(isinstance(manifest.get("status"), str), "status must be a string")
    if "inputs" in manifest:
        need(render_id(manifest["inputs"]) == rid, "render_id does not match the hash of inputs")
    story = manifest.get("story")
    need(
        isinstance(story, Mapping) and isinstance(story.get("sha256"), str), "story.sha256 missing"
    )
    plots = manifest.get("plots")
    need(isinstance(plots, list) and bool(plots), "plots must be a non-empty list")
    for n, plot in enumerate(plots):
        need(isinstance(plot, Mapping) and isinstance(plot.get("index"), int), f"plots[{n}].index")
    need(isinstance(manifest.get("outputs"), Mapping), "outputs must be an object")
    for key in ("checkpoints", "concepts"):
        items = manifest.get(key, [])
        need(
            isinstance(items, list) and all(isinstance(i, Mapping) for i in items),
            f"{key} must be a list of objects",
        )
    files = [("outputs." + k, v) for k, v in manifest["outputs"].items()]
    files += [(f"plots[{n}].video", p.get("video")) for n, p in enumerate(plots)]
    for name, value in files:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                try:
                    safe_relpath(item, name, where, 0)
                except StoryScriptError as exc:
                    raise LineageError(
                        f"{where}: {exc.problem} (render files stay inside the render folder)"
                    ) from exc


def write_manifest(out_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Validate and write `out_dir/manifest.json` atomically (temp file, fsync, rename)."""
    path = Path(out_dir) / MANIFEST_NAME
    validate_manifest(manifest, str(path))
    try:
        text = json.dumps(to_plain(manifest), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LineageError(f"{path}: not JSON-serialisable: {exc}") from exc
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
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


@dataclass(frozen=True)
class Asset:
    """One thing a render used; `aliases` are other names a user may look it up by."""

    kind: str
    asset_id: str
    name: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def manifest_assets(manifest: Mapping[str, Any]) -> list[Asset]:
    """The assets a manifest names: story, checkpoints, concepts, library, clips, depth keys."""
    assets: list[Asset] = []
    story = manifest["story"]
    assets.append(Asset("story", story["sha256"], _str(story.get("source"))))
    for item in manifest.get("checkpoints", []):
        key = _str(item.get("sha256")) or _str(item.get("dvc_md5")) or _str(item.get("name"))
        if key:
            extra = (_str(item.get("dvc_md5")), _str(item.get("path")))
            assets.append(
                Asset("checkpoint", key, _str(item.get("name")), tuple(a for a in extra if a))
            )
    for item in manifest.get("concepts", []):
        key = _str(item.get("sha256")) or _str(item.get("dvc_md5")) or _str(item.get("name"))
        if key:
            extra = (_str(item.get("dvc_md5")), _str(item.get("ref")))
            assets.append(
                Asset("concept", key, _str(item.get("name")), tuple(a for a in extra if a))
            )
    library = manifest.get("library")
    if isinstance(library, Mapping) and library.get("version") is not None:
        table = library.get("table", "clips")
        extra = (_str(library.get("manifest_dvc_md5")),)
        assets.append(
            Asset(
                "library",
                f"{table}@{library['version']}",
                _str(library.get("uri")),
                tuple(a for a in extra if a),
            )
        )
    for plot in manifest["plots"]:
        clip = _str(plot.get("clip_id"))
        if clip:
            extra = (_str(plot.get("clip_source_sha256")), _str(plot.get("clip_uri")))
            assets.append(
                Asset("clip", clip, _str(plot.get("clip_uri")), tuple(a for a in extra if a))
            )
        depth = _str(plot.get("depth_key"))
        if depth:
            assets.append(Asset("depth", depth))
    unique: dict[tuple[str, str], Asset] = {}
    for asset in assets:
        unique.setdefault((asset.kind, asset.asset_id), asset)
    return list(unique.values())


class LineageRegistry:
    """Which render used which asset: an append-only JSONL edge file under the workspace."""

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.root = Path(workspace)
        self.folder = self.root / "lineage"
        self.path = self.folder / "edges.jsonl"
        self._lock_path = self.folder / ".lock"

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self._lock_path, "a+")  # noqa: SIM115 - held for the whole block
        except OSError as exc:
            raise LineageError(f"{self.folder}: cannot open the registry: {exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _rows(self) -> list[dict[str, Any]]:
        """Every well-formed row (a line torn by a crash is skipped)."""
        if not self.path.exists():
            return []
        rows = []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and {"render_id", "kind", "asset_id"} <= row.keys():
                    rows.append(row)
        return rows

    def _manifest_ref(self, manifest_path: Path | None) -> str | None:
        if manifest_path is None:
            return None
        resolved = Path(manifest_path).resolve()
        root = self.root.resolve()
        return (
            resolved.relative_to(root).as_posix()
            if resolved.is_relative_to(root)
            else str(resolved)
        )

    def add_render(
        self, manifest: Mapping[str, Any], manifest_path: str | os.PathLike[str] | None = None
    ) -> int:
        """Register a complete render's edges (idempotent); returns how many rows were new."""
        validate_manifest(manifest, str(manifest_path or "manifest"))
        if manifest["status"] != "complete":
            raise LineageError(
                f"{manifest_path or 'manifest'}: status is {manifest['status']!r}, not complete"
            )
        rid = manifest["render_id"]
        base = {
            "render_id": rid,
            "manifest": self._manifest_ref(Path(manifest_path) if manifest_path else None),
            "created": manifest.get("created"),
        }
        story = manifest["story"]
        rows = [
            {**base, "kind": "render", "asset_id": rid, "name": story.get("title"), "aliases": []}
        ]
        rows += [
            {**base, **asdict(a), "aliases": list(a.aliases)} for a in manifest_assets(manifest)
        ]
        with self._locked(exclusive=True):
            seen = {(r["render_id"], r["kind"], r["asset_id"]) for r in self._rows()}
            new = [r for r in rows if (r["render_id"], r["kind"], r["asset_id"]) not in seen]
            if new:
                payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in new)
                try:
                    with open(self.path, "ab") as handle:
                        if handle.tell() > 0:
                            with open(self.path, "rb") as reader:
                                reader.seek(-1, os.SEEK_END)
                                if reader.read(1) != b"\n":
                                    payload = "\n" + payload
                        handle.write(payload.encode("utf-8"))
                        handle.flush()
                        os.fsync(handle.fileno())
                except OSError as exc:
                    raise LineageError(
                        f"{self.path}: cannot append: {exc.strerror or exc}"
                    ) from exc
        return len(new)

    def edges(self) -> list[dict[str, Any]]:
        """All rows, in the order they were added."""
        with self._locked(exclusive=False):
            return self._rows()

    def renders(self) -> list[str]:
        """Every registered render id, oldest first."""
        return list(dict.fromkeys(r["render_id"] for r in self.edges() if r["kind"] == "render"))

    def resolve(self, render: str) -> str:
        """A full render id from an id or a unique prefix of one."""
        matches = [r for r in self.renders() if r.startswith(render)] if render else []
        if render in matches:
            return render
        if len(matches) != 1:
            problem = "no render" if not matches else f"{len(matches)} renders"
            raise LineageError(f"{self.path}: {problem} matching {render!r}")
        return matches[0]

    def renders_using(self, asset_id: str) -> list[str]:
        """Renders that used an asset, looked up by id, name, alias or an id prefix (>= 8 chars)."""

        def matches(row: dict[str, Any]) -> bool:
            if row["kind"] == "render":
                return False
            if asset_id in (row["asset_id"], row.get("name")) or asset_id in row.get("aliases", []):
                return True
            return len(asset_id) >= 8 and str(row["asset_id"]).startswith(asset_id)

        return list(dict.fromkeys(r["render_id"] for r in self.edges() if matches(r)))

    def tree(self, render: str) -> dict[str, Any]:
        """A nested view of one render: story, environment, models, library, plots -> clips."""
        rid = self.resolve(render)
        rows = [r for r in self.edges() if r["render_id"] == rid]
        head = next(r for r in rows if r["kind"] == "render")
        assets: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row["kind"] != "render":
                assets.setdefault(row["kind"], []).append(
                    {"id": row["asset_id"], "name": row.get("name"), "aliases": row.get("aliases")}
                )
        tree: dict[str, Any] = {
            "render_id": rid,
            "title": head.get("name"),
            "created": head.get("created"),
            "manifest": head.get("manifest"),
            "assets": assets,
        }
        manifest_file = self._manifest_file(head.get("manifest"))
        if manifest_file is None or not manifest_file.exists():
            tree["manifest_missing"] = True
            return tree
        manifest = read_manifest(manifest_file)
        env = manifest.get("environment", {})
        tree.update(
            {
                "status": manifest["status"],
                "story": {k: v for k, v in manifest["story"].items() if k != "script"},
                "git": env.get("git"),
                "packages": env.get("packages"),
                "checkpoints": manifest.get("checkpoints", []),
                "concepts": manifest.get("concepts", []),
                "library": manifest.get("library"),
                "plots": [
                    {
                        "index": p["index"],
                        "text": p.get("text"),
                        "prompt": p.get("prompt"),
                        "seed": p.get("seed"),
                        "clip": {
                            "id": p.get("clip_id"),
                            "uri": p.get("clip_uri"),
                            "source_sha256": p.get("clip_source_sha256"),
                        },
                        "depth_key": p.get("depth_key"),
                        "video": p.get("video"),
                    }
                    for p in manifest["plots"]
                ],
                "outputs": manifest["outputs"],
            }
        )
        return tree

    def _manifest_file(self, ref: str | None) -> Path | None:
        if not ref:
            return None
        path = Path(ref)
        return path if path.is_absolute() else self.root / path
