"""Flow `rerender_affected` / `story rerender-affected`: every render that used an asset, again.

When a checkpoint is replaced, or a concept pack gets a new version, the lineage registry names
the renders that used the old one. Each is re-rendered by `rerender` (same story, clips, seeds
and parameters) on the new checkpoint, or, without one, on its own checkpoint as that name now
resolves, which is how a new concept pack version is picked up (packs are resolved by name).

A render's target is the checkpoint sha256 and concept hashes it would be rendered with now. A
render already on its target needs nothing; a render whose counterpart on the target is already
registered (same story, seed, candidates, parameters and pinned clips) is done. So a resumed or
scheduled run only re-renders what is left. A render that fails is quarantined with its reason
and the others go on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from story.flows.engine import flow
from story.flows.logs import run_logger
from story.flows.render_story import concept_folders
from story.flows.reproduce import find_render, rerender
from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json, sha256_tree
from story.tasks.provenance.lineage import LineageRegistry, read_manifest
from story.tasks.render.render_plot import checkpoint_sha256, resolve_checkpoint
from story.tasks.script.parse import Story
from story.tasks.settings import Settings

ASSET_KINDS = ("checkpoint", "concept")
PREFIX_MIN = 8  # an id prefix this long names an asset, as in `story lineage --asset`


def _reason(exc: BaseException) -> str:
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

    def concepts(self, manifest: dict[str, Any]) -> dict[str, str | None]:
        story = Story.from_dict(manifest["story"]["script"])
        out: dict[str, str | None] = {}
        for name, folder in concept_folders(story, self.settings).items():
            if folder not in self._trees:
                self._trees[folder] = sha256_tree(folder) if Path(folder).exists() else None
            out[name] = self._trees[folder]
        return out

    def of(self, manifest: dict[str, Any], checkpoint: str | None) -> tuple[str, dict[str, Any]]:
        """(checkpoint name, models) the render would be re-rendered with."""
        name = checkpoint or manifest["inputs"]["checkpoint"]["name"]
        return name, {"checkpoint": self.checkpoint(name), "concepts": self.concepts(manifest)}


def plan_rerenders(asset: str, checkpoint: str | None, settings: Settings) -> dict[str, Any]:
    """Every render that used `asset`, each marked todo, done, current or quarantined.

    done: a registered render already has the same signature on the target (`new_render`);
    current: the render itself is on the target; quarantined: it cannot even be planned.
    """
    registry = LineageRegistry(settings.workspace)
    edges = asset_edges(registry, asset)
    kinds: dict[str, set[str]] = {}
    for row in edges:
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
            renders.append({**entry, "status": "quarantined", "reason": _reason(exc)})
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


def publish_artifacts(summary: dict[str, Any]) -> None:
    """One row per affected render, and the quarantined ones with their reasons."""
    create_table_artifact(
        key="rerender-affected",
        table=[
            {
                "render": r["render_id"],
                "status": r["status"],
                "new render": r.get("new_render", ""),
                "reason": r.get("reason", ""),
            }
            for r in summary["renders"]
        ],
        description=f"Renders that used {summary['asset']}, re-rendered on the new version",
    )
    lines = ["| render | reason |", "|---|---|"]
    lines += [
        f"| {q['render_id']} | {q['reason'].replace('|', '/')[:300]} |"
        for q in summary["quarantined"]
    ]
    create_markdown_artifact(
        key="rerender-affected-quarantined",
        markdown="# Quarantined renders\n\n"
        + ("\n".join(lines) if summary["quarantined"] else "None."),
        description="Renders that could not be re-rendered, with the reason",
    )


@flow(name="rerender_affected")
def rerender_affected(
    asset: str,
    checkpoint: str | None = None,
    settings: dict[str, Any] | None = None,
    dry_run: bool = False,
    use_ray: bool = True,
) -> dict[str, Any]:
    """Re-render every render that used a checkpoint or concept pack on the new version."""
    log = run_logger(__name__)
    resolved = Settings(**(settings or {}))
    if not asset.strip():
        raise StoryError("give the asset: a checkpoint or concept pack name, sha256 or prefix")
    if checkpoint is not None:
        resolve_checkpoint(checkpoint, resolved.checkpoints)
    t0 = time.perf_counter()
    planned = plan_rerenders(asset, checkpoint, resolved)
    renders = planned["renders"]
    todo = [r for r in renders if r["status"] == "todo"]
    log.info(
        "%d renders used %s: %d to re-render, %d done, %d current",
        len(renders),
        asset,
        len(todo),
        sum(r["status"] == "done" for r in renders),
        sum(r["status"] == "current" for r in renders),
    )
    if not dry_run and todo:
        progress = create_progress_artifact(
            0.0, key="rerender-affected-progress", description=f"Re-rendering {len(todo)} renders"
        )
        for n, entry in enumerate(todo, 1):
            try:
                result = rerender(
                    entry["render_id"],
                    entry["target_checkpoint"],
                    resolved.resolved(),
                    use_ray=use_ray,
                )
            except Exception as exc:  # noqa: BLE001 - one failed render must not stop the rest
                entry.update({"status": "quarantined", "reason": _reason(exc)})
                log.error("render %s quarantined: %s", entry["render_id"], entry["reason"])
            else:
                entry.update(
                    {
                        "status": "rerendered",
                        "new_render": result["render_id"],
                        "comparison": result["comparison"],
                    }
                )
                log.info("%d/%d: %s -> %s", n, len(todo), entry["render_id"], result["render_id"])
            update_progress_artifact(progress, 100.0 * n / len(todo))
    summary = {
        **planned,
        "dry_run": dry_run,
        "affected": [r["render_id"] for r in renders],
        "rerendered": [r["render_id"] for r in renders if r["status"] == "rerendered"],
        "todo": [r["render_id"] for r in renders if r["status"] == "todo"],
        "quarantined": [
            {"render_id": r["render_id"], "reason": r["reason"]}
            for r in renders
            if r["status"] == "quarantined"
        ],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    publish_artifacts(summary)
    return summary
