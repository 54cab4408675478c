"""Flow `rerender` / `story rerender`: a render's story, clips and seeds on another checkpoint."""

from __future__ import annotations

from typing import Any

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.parameters import SettingsParam, as_settings
from story.tasks.render.replay import rerender_on


@flow(name="rerender")
def rerender(
    render: str, checkpoint: str, settings: SettingsParam = None, use_ray: bool = True
) -> dict[str, Any]:
    """The same story, clips and seeds on another checkpoint, plus a comparison page."""
    resolved = as_settings(settings)
    return rerender_on(render, checkpoint, resolved, executor_for(resolved, use_ray, warm=True))
