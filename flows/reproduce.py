"""Flow `reproduce_render` / `story reproduce`: a render again from its manifest alone.

Every cache is bypassed and each plot's frames are compared with the hashes the manifest
pinned. It refuses when a pinned model or a clip file changed (`story.tasks.render.replay`,
`story.tasks.render.render_plot`).
"""

from __future__ import annotations

from typing import Any

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.parameters import SettingsParam, as_settings
from story.tasks.render.replay import reproduce


@flow(name="reproduce_render")
def reproduce_render(
    render: str, settings: SettingsParam = None, use_ray: bool = False
) -> dict[str, Any]:
    """Re-render from the manifest with no cache and report whether every frame is identical."""
    resolved = as_settings(settings)
    return reproduce(render, resolved, executor_for(resolved, use_ray, warm=True))
