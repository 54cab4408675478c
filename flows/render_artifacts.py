"""What a TD sees of a render run in the Prefect UI: plot table with thumbnails, stage timings,
where the files are and how to trace them, tags naming its inputs, and why it failed.

Thumbnails are the storyboard strips the render wrote (retrieved clip, depth, generated frames),
shrunk and embedded as data URIs, so the UI shows them without serving the workspace.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

from PIL import Image
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.tasks.provenance.manifest import read_manifest

log = logging.getLogger(__name__)

THUMB_HEIGHT = 40
THUMB_MAX_WIDTH = 320
STRIPS = (("retrieved clip", "retrieved"), ("depth", "structure"), ("generated", "generated_0"))


def thumbnail(path: Path) -> str:
    """`path` as a small inline PNG image in markdown, or a dash when it is missing."""
    if not path.is_file():
        return "-"
    with Image.open(path) as image:
        scale = THUMB_HEIGHT / image.height
        size = (min(THUMB_MAX_WIDTH, max(1, round(image.width * scale))), THUMB_HEIGHT)
        small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"![{path.stem}](data:image/png;base64,{data})"


def _cell(text: Any) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def plots_markdown(folder: Path, manifest: dict[str, Any]) -> str:
    """One row per plot: query, prompt, retrieved clip and the three storyboard strips."""
    header = ["plot", "query", "prompt", "clip", *(name for name, _ in STRIPS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for plot in manifest["plots"]:
        index = plot["index"]
        thumbs = [
            thumbnail(folder / "storyboard" / f"plot_{index:03d}_{strip}.png")
            for _, strip in STRIPS
        ]
        clip = f"`{plot['clip_id']}` {Path(plot.get('clip_uri', '')).name}"
        row = [index, plot["query"], plot["prompt"], clip, *thumbs]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return f"# Render {manifest['render_id']}\n\n" + "\n".join(lines)


def outputs_markdown(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    """Where the render's files are, what it was made from and how to trace it."""
    rid = summary["render_id"]
    lines = [f"# Render `{rid}`", ""]
    for key in ("folder", "video", "storyboard", "timeline", "manifest"):
        lines.append(f"- **{key}**: [`{summary[key]}`](file://{summary[key]})")
    lines += ["", "## Lineage", "", f"- `story lineage {rid}`: the render's lineage tree"]
    for asset in [*manifest.get("checkpoints", []), *manifest.get("concepts", [])]:
        name, sha = asset.get("name"), str(asset.get("sha256") or "")[:12]
        lines.append(f"- `story lineage --asset {name}`: every render using {name} ({sha})")
    lines.append(f"- `story reproduce {rid}`: re-render from the manifest and compare frames")
    story = manifest.get("story", {})
    lines += ["", f"Story: `{story.get('source')}` (sha256 {str(story.get('sha256'))[:12]})"]
    return "\n".join(lines)


def render_tags(manifest: dict[str, Any]) -> list[str]:
    """Tags naming the story, the checkpoint and each concept pack with their versions."""
    story = manifest.get("story", {})
    name = Path(str(story.get("source") or "story")).stem
    tags = [f"story:{name}"]
    for asset in manifest.get("checkpoints", []):
        tags.append(f"checkpoint:{asset.get('name')}@{str(asset.get('sha256'))[:8]}")
    for asset in manifest.get("concepts", []):
        tags.append(f"concept:{asset.get('name')}@{str(asset.get('sha256'))[:8]}")
    return tags


def tag_flow_run(tags: list[str]) -> None:
    """Add `tags` to the current flow run (no-op outside one)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run.id).tags
        client.update_flow_run(run.id, tags=sorted({*current, *tags}))


def publish_render(summary: dict[str, Any]) -> None:
    """The plot table, timings, outputs and lineage of a finished render; tags on the run."""
    folder = Path(summary["folder"])
    manifest = read_manifest(summary["manifest"])
    create_markdown_artifact(
        key="render-story-plots",
        markdown=plots_markdown(folder, manifest),
        description=f"Render {summary['render_id']}: retrieved clip, depth, generated per plot",
    )
    create_table_artifact(
        key="render-story-timings",
        table=[{"stage": k, "seconds": round(v, 3)} for k, v in summary["timings"].items()],
        description="Time spent retrieving, computing structure, synthesising and assembling",
    )
    create_markdown_artifact(
        key="render-story-outputs",
        markdown=outputs_markdown(summary, manifest),
        description="Where the render's files are and how to trace them",
    )
    tag_flow_run(render_tags(manifest))


def publish_failure(story: str, error: BaseException) -> None:
    """Why a render failed, naming the story and the plot or item at fault."""
    create_markdown_artifact(
        key="render-story-failure",
        markdown=(
            f"# Render of `{story}` failed\n\n| item | problem |\n|---|---|\n"
            f"| {_cell(type(error).__name__)} | {_cell(error)} |\n\n"
            "Nothing already written was lost; fix the item and submit the story again."
        ),
        description=f"Why the render of {Path(story).name} failed",
    )
