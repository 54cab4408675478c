"""The training curve's score: fixed held-out scenes rendered by the EMA model, as training goes."""

from __future__ import annotations

import numpy as np
import torch

from story.models.pipeline import FORMER_DEFAULTS
from story.models.t2v import StructureT2V
from story.tasks.evaluation.quality import mean_quality, scene_quality
from story.tasks.render.synthesize import render_batch
from story.tasks.training.t2v_data import held_out_scenes, miniworld_structure


def evaluate_model(
    model: StructureT2V,
    n_scenes: int = 16,
    steps: int = 20,
    guidance: float = 4.0,
    guided: bool = True,
    tau: int = 0,
    strength: float = 1.0,
    seed: int = 0,
    estimate_depth=None,
    noise_warp: float | None = None,
) -> dict[str, float]:
    """Mean quality over held-out miniature-world scenes (validation seeds, never trained on).

    `noise_warp` None samples as the curves always have (`FORMER_DEFAULTS`); a value samples
    with that much noise carried along the guide's motion (the product's default is 0.8)."""
    cfg = model.config
    scenes = held_out_scenes(n_scenes, cfg.frames, cfg.height, cfg.width)
    prompts = [scene.caption for scene in scenes]
    guides = np.stack([miniworld_structure(scene.depth) for scene in scenes])
    structures = torch.from_numpy(guides)[:, None] if guided else None
    renders = render_batch(
        model,
        prompts,
        structures,
        seed=seed,
        steps=steps,
        guidance=guidance,
        tau=tau,
        strength=strength,
        # The probe's sampling stays what it was when the curves began, so a run's curve is
        # comparable across a change of the product's default (`pipeline.FORMER_DEFAULTS`).
        noise_warp=FORMER_DEFAULTS["noise_warp"] if noise_warp is None else noise_warp,
        deflicker=FORMER_DEFAULTS["deflicker"],
    )
    return mean_quality(scene_quality(renders, scenes, guides, estimate_depth))


def probe_row(
    model: StructureT2V,
    n_scenes: int,
    steps: int,
    guidance: float,
    guided_modes: tuple[bool, ...] = (True, False),
    noise_warp: float | None = None,
) -> dict[str, dict[str, float]]:
    """The curve's scores of one model: {"guided": ..., "text_only": ...} for the modes asked."""
    return {
        "guided" if guided else "text_only": evaluate_model(
            model,
            n_scenes=n_scenes,
            steps=steps,
            guidance=guidance,
            guided=guided,
            noise_warp=noise_warp,
        )
        for guided in guided_modes
    }
