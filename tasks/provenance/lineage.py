"""Lineage: a registry of which render used which asset, read from the render manifests.

`LineageRegistry` keeps one JSON line per (render_id, asset_kind, asset_id) edge in
`<workspace>/lineage/edges.jsonl`, appended under an exclusive `flock`, so concurrent renders
never interleave or lose rows. The manifest itself is `story.tasks.provenance.manifest`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from story.tasks.provenance.manifest import LineageError, read_manifest, validate_manifest


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
            extra: tuple[str | None, ...] = (_str(item.get("dvc_md5")), _str(item.get("path")))
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

    def manifest_files(self, render: str) -> list[Path]:
        """Where a render's manifest.json was recorded (a registry entry per location, in order).

        Renders may be written anywhere (`story render --out`, shared storage): the registry,
        not the default renders folder, is what knows where.
        """
        rid = self.resolve(render)
        refs = [r.get("manifest") for r in self.edges() if r["render_id"] == rid]
        files = [self._manifest_file(ref) for ref in dict.fromkeys(refs)]
        return [f for f in files if f is not None]

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
