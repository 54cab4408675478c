"""Screenshots of the studio's Prefect UI: a completed `render_story` run and its plot table.

Needs a running studio (`story studio up`) that has completed a render deployment run
(`story render STORY --submit --wait`). Loads the UI from the studio's own 127.0.0.1 server in
headless Chromium and writes datasets/preview/studio_flow_run.png (the run's page, Artifacts
tab) and datasets/preview/studio_plot_table.png (the plot table artifact with thumbnails).
Run: python datasets/make_studio_preview.py [--workspace WS]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from story.flows.studio.layout import StudioLayout
from story.flows.studio.ui_snapshot import screenshot
from story.tasks.settings import Settings

OUT = Path(__file__).resolve().parent / "preview"


def latest_render_run(layout: StudioLayout) -> tuple[str, str]:
    """(flow-run id, plot-table artifact id) of the newest completed render deployment run."""
    import httpx

    runs = httpx.post(
        f"{layout.api_url}/flow_runs/filter",
        json={
            "flows": {"name": {"any_": ["render_story"]}},
            "flow_runs": {"state": {"name": {"any_": ["Completed"]}}},
            "sort": "START_TIME_DESC",
            "limit": 20,
        },
        timeout=30,
    ).json()
    for run in runs:
        if run["deployment_id"] is None:
            continue
        artifacts = httpx.post(
            f"{layout.api_url}/artifacts/filter",
            json={"artifacts": {"key": {"any_": ["render-story-plots"]},
                                "flow_run_id": {"any_": [run["id"]]}}},
            timeout=30,
        ).json()  # fmt: skip
        if artifacts:
            return run["id"], artifacts[0]["id"]
    raise SystemExit(f"no completed render deployment run on {layout.api_url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings(workspace=args.workspace) if args.workspace else Settings()
    layout = StudioLayout.load(settings)
    flow_run_id, artifact_id = latest_render_run(layout)
    run_png = screenshot(
        f"{layout.ui_url}/v2/runs/flow-run/{flow_run_id}?tab=Artifacts",
        OUT / "studio_flow_run.png",
        height=720,
    )
    table_png = screenshot(
        f"{layout.ui_url}/v2/artifacts/artifact/{artifact_id}", OUT / "studio_plot_table.png"
    )
    print(json.dumps({"flow_run": flow_run_id, "images": [str(run_png), str(table_png)]}))


if __name__ == "__main__":
    main()
