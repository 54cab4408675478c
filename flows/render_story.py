"""Flow `render_story`: story script -> retrieval -> structure -> synthesis -> assembled render.

The render core is `story.tasks.render` (request, plan, plots, commit); this flow picks the
executor (warm Ray actors, or in-process), runs it with a progress bar / artifact and publishes
the render as Prefect artifacts (`render_artifacts`). An unchanged story maps to the same
request and render id and is returned as is; `story render` makes that check before starting a
flow run (`render_story_if_changed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.parameters import SettingsParam, as_settings
from story.flows.progress import Progress
from story.flows.render_artifacts import publish_failure, publish_render
from story.tasks.render.request import RenderRequest
from story.tasks.render.run import find_up_to_date, render_request
from story.tasks.script.parse import load_story
from story.tasks.settings import Settings


def _request(
    story: str,
    settings: Settings,
    out: str | None,
    seed: int,
    checkpoint: str | None,
    candidates: int,
    params: dict[str, Any] | None,
) -> tuple[RenderRequest, Path]:
    script = load_story(story, max_frames=settings.max_plot_frames)
    request = RenderRequest.resolve(
        script, settings, seed=seed, checkpoint=checkpoint, candidates=candidates, params=params
    )
    return request, Path(out) if out else Path(settings.workspace) / "renders"


@flow(name="render_story")
def render_story(
    story: str,
    settings: SettingsParam = None,
    out: str | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    candidates: int = 1,
    params: dict[str, Any] | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """Render a story script into `renders/<render_id>/` and register its lineage."""
    resolved = as_settings(settings)
    try:
        request, out_root = _request(story, resolved, out, seed, checkpoint, candidates, params)
        executor = executor_for(resolved, use_ray, warm=True)
        with Progress(f"render {Path(story).name}: plots", key="render-progress") as progress:
            summary = render_request(request, resolved, out_root, executor, progress=progress)
    except Exception as exc:
        publish_failure(story, exc)
        raise
    publish_render(summary)
    return summary


def render_story_if_changed(
    story: str,
    settings: SettingsParam = None,
    out: str | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    candidates: int = 1,
    params: dict[str, Any] | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """What `story render` runs: a request seen before whose render is complete comes back at
    once, without a flow run (nothing is rendered, so nothing is logged); anything else runs
    the `render_story` flow."""
    resolved = as_settings(settings)
    request, out_root = _request(story, resolved, out, seed, checkpoint, candidates, params)
    found = find_up_to_date(request, resolved, out_root)
    if found is not None:
        return found
    return render_story(
        story,
        resolved,
        out=out,
        seed=seed,
        checkpoint=checkpoint,
        candidates=candidates,
        params=params,
        use_ray=use_ray,
    )
