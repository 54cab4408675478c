"""`story render --submit`: queue a render on the studio's `render_story/render` deployment.

The run goes to the work pool like one queued from the UI or a schedule; the caller gets the
flow-run id and its UI page at once and may wait for the render's summary (the flow's result,
persisted in the studio's result storage).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from story.flows.studio.client import studio_client, studio_settings
from story.flows.studio.layout import StudioLayout
from story.tasks.errors import StoryError
from story.tasks.settings import Settings

RENDER_DEPLOYMENT = "render_story/render"
POLL_S = 1.0


def flow_run_url(layout: StudioLayout, flow_run_id: Any) -> str:
    return f"{layout.ui_url}/runs/flow-run/{flow_run_id}"


def submit(
    settings: Settings,
    deployment: str,
    parameters: dict[str, Any],
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Create a flow run of `deployment` on the running studio; its id, name and UI page."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from story.flows.studio.control import status

    layout = StudioLayout.load(settings)
    if not status(settings)["parts"]["server"]["answering"]:
        raise StoryError(f"no studio answers at {layout.api_url}; start it with `story studio up`")
    try:
        with studio_settings(layout):
            run = run_deployment(
                deployment, parameters=parameters, timeout=0, tags=tags, as_subflow=False
            )
    except ObjectNotFound as exc:
        raise StoryError(
            f"deployment {deployment} is not registered on {layout.api_url}; "
            "run `story studio deploy`"
        ) from exc
    return {
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "deployment": deployment,
        "url": flow_run_url(layout, run.id),
        "state": run.state.name if run.state else None,
    }


def wait_for(settings: Settings, flow_run_id: str, timeout_s: float | None = None) -> Any:
    """Wait for a flow run's final state; the flow's result when it completed, else a
    StoryError naming the state and its message."""
    layout = StudioLayout.load(settings)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with studio_client(layout) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                break
            if deadline is not None and time.monotonic() > deadline:
                raise StoryError(f"flow run {run.name} still {run.state_name} after {timeout_s} s")
            time.sleep(POLL_S)
    if not run.state.is_completed():
        raise StoryError(
            f"flow run {run.name} ended {run.state.name}: {run.state.message} "
            f"({flow_run_url(layout, run.id)})"
        )
    with studio_settings(layout):
        return run.state.result()


def submit_render(
    settings: Settings,
    story: Path,
    checkpoint: str | None = None,
    seed: int = 0,
    candidates: int = 1,
    params: dict[str, Any] | None = None,
    wait: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Queue `story` on the render deployment (tagged with story and checkpoint); with `wait`,
    the render's summary under "render" once the run completes."""
    path = story.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{story}: no such story file")
    checkpoint = checkpoint or settings.checkpoint
    parameters: dict[str, Any] = {
        "story": str(path),
        "checkpoint": checkpoint,
        "seed": seed,
        "candidates": candidates,
    }
    if params:
        parameters["params"] = params
    tags = [f"story:{path.stem}", f"checkpoint:{checkpoint}"]
    report = submit(settings, RENDER_DEPLOYMENT, parameters, tags)
    if wait:
        report["render"] = wait_for(settings, report["flow_run_id"], timeout_s)
        report["state"] = "Completed"
    return report
