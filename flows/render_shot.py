"""Flow `render_shot` / `story shot`: one plot end to end, from a query and a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.parameters import SettingsParam, as_settings
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.jobs import RenderError
from story.tasks.render.request import RenderRequest
from story.tasks.render.run import render_request
from story.tasks.script.query_prompt import derive_query_prompt
from story.tasks.script.story import Plot, Story
from story.tasks.settings import Settings


def shot_query(prompt: str, settings: Settings) -> str:
    """The retrieval query of a shot given only its prompt: appearance dropped, each concept
    replaced by its pack's class word."""
    from story.tasks.concepts.registry import ConceptRegistry

    classes = {e.name: e.class_word for e in reversed(ConceptRegistry(settings).entries)}
    return derive_query_prompt(prompt, classes)[0]


@flow(name="render_shot")
def render_shot(
    query: str | None,
    prompt: str,
    settings: SettingsParam = None,
    out: str | None = None,
    seed: int = 0,
    tau: int | None = None,
    frames: int | None = None,
    checkpoint: str | None = None,
    params: dict[str, Any] | None = None,
    use_ray: bool = False,
) -> dict[str, Any]:
    """Retrieve a clip for `query` (None: derived from the prompt), take its depth, render
    `prompt` on it: mp4 + manifest. Concepts the prompt names are found by name."""
    resolved = as_settings(settings)
    if query is None and prompt.strip():
        query = shot_query(prompt, resolved)
    if query is None or not query.strip() or not prompt.strip():
        raise RenderError("a shot needs a non-empty query and prompt")
    plot = Plot(
        index=0, text=prompt, query=query, prompt=prompt, frames=frames, seed=seed, tau=tau, line=0
    )
    story = Story(title=prompt, characters={}, plots=(plot,), source="<shot>", fmt="yaml")
    request = RenderRequest.resolve(
        story, resolved, seed=seed, checkpoint=checkpoint, params=params
    )
    out_root = Path(out) if out else Path(resolved.workspace) / "renders"
    executor = executor_for(resolved, use_ray, warm=True)
    summary = render_request(request, resolved, out_root, executor)
    plot_entry = read_manifest(summary["manifest"])["plots"][0]
    return {
        **summary,
        "video": str(Path(summary["folder"]) / plot_entry["video"]),
        "clip_id": plot_entry["clip_id"],
        "clip_uri": plot_entry["clip_uri"],
    }
