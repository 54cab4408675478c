"""Flow `rerender_affected` / `story rerender-affected`: every render that used an asset, again.

`story.tasks.render.affected` finds the renders that used a checkpoint or concept pack and what
is left to do; each render left is re-rendered (same story, clips, seeds and parameters) on the
new version as its own Prefect task run. A render that fails is quarantined with its reason and
the others go on; a resumed or scheduled run only re-renders what is left.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.logs import run_logger
from story.flows.parameters import SettingsParam, as_settings
from story.tasks.errors import StoryError
from story.tasks.render.affected import first_line, plan_rerenders
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.render.replay import rerender_on

rerender_task = task(rerender_on, name="rerender", cache_policy=NO_CACHE)


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
    settings: SettingsParam = None,
    dry_run: bool = False,
    use_ray: bool = True,
) -> dict[str, Any]:
    """Re-render every render that used a checkpoint or concept pack on the new version."""
    log = run_logger(__name__)
    resolved = as_settings(settings)
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
        executor = executor_for(resolved, use_ray, warm=True)
        progress = create_progress_artifact(
            0.0, key="rerender-affected-progress", description=f"Re-rendering {len(todo)} renders"
        )
        for n, entry in enumerate(todo, 1):
            try:
                result = rerender_task(
                    entry["render_id"], entry["target_checkpoint"], resolved, executor
                )
            except Exception as exc:  # noqa: BLE001 - one failed render must not stop the rest
                entry.update({"status": "quarantined", "reason": first_line(exc)})
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
