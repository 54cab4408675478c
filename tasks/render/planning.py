"""Planning a render: retrieval, frame sampling, seeds and parameters -> jobs and the render id.

The render id hashes `RenderPlan.inputs`: the story's content, seed, candidates, parameters, the
checkpoint's and concept packs' hashes (taken from the request, not recomputed), the depth
model's id, the delivery (editorial rate and retime method) and every job (clip, its source
hash, frame indices, seed, structure, parameters).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from story.models.depth import resolve_depth_model_id
from story.tasks.hashing import render_id
from story.tasks.outputs.delivery import Delivery
from story.tasks.provenance.manifest import describe_asset
from story.tasks.render.checkpoints import checkpoint_geometry
from story.tasks.render.jobs import PlotJob
from story.tasks.render.request import RenderRequest
from story.tasks.render.retrieval import clip_fields, frame_indices, retrieve
from story.tasks.script.story import CONCEPT, effective_seed
from story.tasks.settings import Settings


@dataclass(frozen=True)
class RenderPlan:
    """A request made concrete: the jobs to render and everything the render id pins."""

    request: RenderRequest
    jobs: list[PlotJob]
    inputs: dict[str, Any]
    depth_model: str
    concept_assets: list[dict[str, Any]]
    table_version: int
    retrieve_s: float

    @property
    def render_id(self) -> str:
        return render_id(self.inputs)

    @property
    def worker_identity(self) -> dict[str, Any]:
        """What a warm worker must have loaded to serve this plan (same names, same weights)."""
        return {"checkpoint": self.request.checkpoint_sha256, "depth_model": self.depth_model}


def _jobs(
    request: RenderRequest, settings: Settings, chosen: dict[int, list[dict[str, Any]]]
) -> list[PlotJob]:
    model_frames = checkpoint_geometry(request.checkpoint_folder).frames
    jobs = []
    for plot in request.story.plots:
        plot_params = request.job_params()
        if plot.tau is not None:
            plot_params["tau"] = int(plot.tau)
        named = dict.fromkeys([*plot.characters, *CONCEPT.findall(plot.prompt)])
        used = {n: request.concept_folders[n] for n in named if n in request.concept_folders}
        for candidate, row in enumerate(chosen[plot.index]):
            jobs.append(
                PlotJob(
                    index=plot.index,
                    candidate=candidate,
                    prompt=plot.prompt,
                    clip=clip_fields(row),
                    frame_indices=frame_indices(row, plot.frames or model_frames, settings.stride),
                    seed=effective_seed(plot, request.seed),
                    structure=plot.structure,
                    params=plot_params,
                    concepts=used,
                )
            )
    return jobs


def plan_render(request: RenderRequest, settings: Settings) -> RenderPlan:
    """Retrieve each plot's clips and lay out the jobs; refuse a story naming a missing pack."""
    t0 = time.perf_counter()
    chosen, table_version = retrieve(request.story, settings, request.candidates, request.pins)
    jobs = _jobs(request, settings, chosen)
    concepts = request.concept_packs()
    depth_model = resolve_depth_model_id(settings.depth_model, settings.checkpoints)
    inputs = {
        "story": request.story.content_hash(),
        "seed": request.seed,
        "candidates": request.candidates,
        "params": request.params,
        "checkpoint": {"name": request.checkpoint, "sha256": request.checkpoint_sha256},
        "depth_model": depth_model,
        "concepts": concepts,
        "delivery": Delivery.from_settings(settings).record(),
        "plots": [
            {
                "index": j.index,
                "candidate": j.candidate,
                "prompt": j.prompt,
                "clip_id": j.clip["clip_id"],
                "clip_source_sha256": j.clip["source_hash"],
                "frame_indices": list(j.frame_indices),
                "seed": j.seed,
                "structure": j.structure,
                "params": j.params,
            }
            for j in jobs
        ],
    }
    return RenderPlan(
        request=request,
        jobs=jobs,
        inputs=inputs,
        depth_model=depth_model,
        concept_assets=[
            describe_asset(name, request.concept_folders[name], sha256=sha)
            for name, sha in concepts.items()
        ],
        table_version=table_version,
        retrieve_s=time.perf_counter() - t0,
    )
