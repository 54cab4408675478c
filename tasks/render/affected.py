"""Which renders used an asset, and which of them still need re-rendering on its new version.

When a checkpoint is replaced, or a concept pack gets a new version, the lineage registry names
the renders that used the old one. A render's target is the checkpoint sha256 and concept hashes
it would be rendered with now (on the new checkpoint, or, without one, on its own checkpoint as
that name now resolves, which is how a new concept pack version is picked up). A render already
on its target is current; one whose counterpart on the target is registered (same story, seed,
candidates, parameters and pinned clips) is done; the rest are todo. So a resumed or scheduled
run only re-renders what is left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json
from story.tasks.provenance.checkpoint_identity import checkpoint_sha256
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.replay import find_render, manifest_story
from story.tasks.render.request import concept_folders
from story.tasks.settings import Settings

ASSET_KINDS = ("checkpoint", "concept")
PREFIX_MIN = 8  # an id prefix this long names an asset, as in `story lineage --asset`


def first_line(exc: BaseException) -> str:
    """An error's first line: the reason a quarantined render is listed with."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def asset_edges(registry: LineageRegistry, asset: str) -> list[dict[str, Any]]:
    """Registry rows of a checkpoint or concept pack matching `asset` (id, name, alias, prefix).

    Raises StoryError when the id names only other kinds of assets (a clip, a story, ...).
    """

    def matches(row: dict[str, Any]) -> bool:
        if asset in (row["asset_id"], row.get("name")) or asset in row.get("aliases", []):
            return True
        return len(asset) >= PREFIX_MIN and str(row["asset_id"]).startswith(asset)

    rows = [r for r in registry.edges() if r["kind"] != "render" and matches(r)]
    wanted = [r for r in rows if r["kind"] in ASSET_KINDS]
    if rows and not wanted:
        kinds = sorted({r["kind"] for r in rows})
        raise StoryError(
            f"asset {asset!r} is a {' / '.join(kinds)} in {registry.path}; "
            "rerender-affected takes a checkpoint or a concept pack"
        )
    return wanted


def signature(manifest: dict[str, Any]) -> str:
    """What a re-render keeps: story, seed, candidates, parameters and the pinned clips."""
    inputs = manifest["inputs"]
    pins = sorted((int(p["index"]), int(p["candidate"]), p["clip_id"]) for p in inputs["plots"])
    return sha256_json(
        {
            "story": inputs["story"],
            "seed": inputs["seed"],
            "candidates": inputs["candidates"],
            "params": inputs["params"],
            "pins": pins,
        }
    )


def models_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint and concept hashes a render was made with."""
    inputs = manifest["inputs"]
    return {"checkpoint": inputs["checkpoint"]["sha256"], "concepts": dict(inputs["concepts"])}


class Targets:
    """What a render would be made with now: checkpoint hashes and concept packs, each once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._checkpoints: dict[str, str] = {}
        self._trees: dict[str, str | None] = {}

    def checkpoint(self, name: str) -> str:
        if name not in self._checkpoints:
            folder = resolve_checkpoint(name, self.settings.checkpoints)
            self._checkpoints[name] = checkpoint_sha256(folder)
        return self._checkpoints[name]

    def concepts(self, manifest: dict[str, Any], checkpoint: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        story = manifest_story(manifest)
        for name, folder in concept_folders(story, self.settings, checkpoint).items():
            if folder not in self._trees:
                self._trees[folder] = checkpoint_sha256(folder) if Path(folder).exists() else None
            out[name] = self._trees[folder]
        return out

    def of(self, manifest: dict[str, Any], checkpoint: str | None) -> tuple[str, dict[str, Any]]:
        """(checkpoint name, models) the render would be re-rendered with."""
        name = checkpoint or manifest["inputs"]["checkpoint"]["name"]
        models = {"checkpoint": self.checkpoint(name), "concepts": self.concepts(manifest, name)}
        return name, models


def plan_rerenders(asset: str, checkpoint: str | None, settings: Settings) -> dict[str, Any]:
    """Every render that used `asset`, each marked todo, done, current or quarantined.

    done: a registered render already has the same signature on the target (`new_render`);
    current: the render itself is on the target; quarantined: it cannot even be planned.
    """
    registry = LineageRegistry(settings.workspace)
    kinds: dict[str, set[str]] = {}
    for row in asset_edges(registry, asset):
        kinds.setdefault(row["render_id"], set()).add(row["kind"])
    targets = Targets(settings)
    counterparts: dict[str, dict[tuple[str, str], str]] = {}

    def counterpart(models: dict[str, Any], sig: str) -> str | None:
        sha = models["checkpoint"]
        if sha not in counterparts:
            found: dict[tuple[str, str], str] = {}
            for rid in registry.renders_using(sha):
                try:
                    other = read_manifest(find_render(rid, settings))
                except StoryError:
                    continue
                found.setdefault((signature(other), sha256_json(models_of(other))), rid)
            counterparts[sha] = found
        return counterparts[sha].get((sig, sha256_json(models)))

    renders = []
    for rid, used in kinds.items():
        entry: dict[str, Any] = {"render_id": rid, "kind": "/".join(sorted(used))}
        try:
            manifest = read_manifest(find_render(rid, settings))
            name, target = targets.of(manifest, checkpoint)
        except StoryError as exc:
            renders.append({**entry, "status": "quarantined", "reason": first_line(exc)})
            continue
        entry.update(
            {
                "title": manifest["story"].get("title"),
                "checkpoint": manifest["inputs"]["checkpoint"]["name"],
                "target_checkpoint": name,
            }
        )
        if models_of(manifest) == target:
            entry["status"] = "current"
        elif (done := counterpart(target, signature(manifest))) is not None:
            entry.update({"status": "done", "new_render": done})
        else:
            entry["status"] = "todo"
        renders.append(entry)
    return {"asset": asset, "checkpoint": checkpoint, "renders": renders}
