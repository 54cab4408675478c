"""The structure-guided video pipeline: diffusers' `DiffusionPipeline` around a video bundle.

Its `__call__` signature is the one home of the sampling defaults (steps, guidance, tau,
structure strength, detail level, temporal guidance, noise shared across frames or
along the structure's motion, smoothing along it, attention to the first frame, holding still
what the guide clip holds still, in the latents and in the decoded pixels, deflickering the
decoded frames along their own motion): every other
place that needs a default reads it with `sampling_defaults()`; `FORMER_DEFAULTS` keeps the
value a knob had before its default changed, so older renders reproduce. The pipeline gives
`from_pretrained`, `.to()` and the diffusers step callback
(`callback_on_step_end(pipe, step, t, {"latents": x}) -> dict`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline

from story.models.deflicker import check_deflicker, deflicker_video
from story.models.sampler import SamplerStats, sample_latents
from story.models.still_hold import check_pixel_hold, hold_pixels
from story.models.t2v import StructureT2V

SAMPLING_KEYS = (
    "steps",
    "guidance",
    "tau",
    "strength",
    "detail",
    "temporal_guidance",
    "noise_share",
    "noise_warp",
    "flow_smoothing",
    "cross_frame",
    "still_hold",
    "pixel_hold",
    "deflicker",
)


class StructureGuidedPipeline(DiffusionPipeline):
    """Prompt (+ a structure guide) -> decoded video, on a `StructureT2V` (or compatible) bundle."""

    def __init__(self, model: StructureT2V) -> None:
        super().__init__()
        self.register_modules(model=model)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto") -> StructureGuidedPipeline:
        """The pipeline of a bundle folder written by `StructureT2V.save_pretrained`."""
        return cls(StructureT2V.from_pretrained(folder, device=device))

    @torch.no_grad()
    def __call__(
        self,
        prompt_embeds: torch.Tensor | Callable[[int], torch.Tensor],
        negative_prompt_embeds: torch.Tensor | None = None,
        structure: torch.Tensor | None = None,
        *,
        steps: int = 25,
        guidance: float = 4.0,
        tau: int = 0,
        strength: float = 1.0,
        detail: int = 0,
        temporal_guidance: float = 1.0,
        noise_share: float = 0.0,
        noise_warp: float = 0.8,
        flow_smoothing: float = 0.0,
        cross_frame: float = 0.0,
        still_hold: float = 1.0,
        still: torch.Tensor | None = None,
        pixel_hold: float = 0.0,
        still_pixels: torch.Tensor | None = None,
        deflicker: float = 0.3,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        stats: SamplerStats | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None = None,
        output_type: str = "latent",
    ) -> torch.Tensor:
        """Denoised latents (B, C, T, h, w), or decoded video in [-1, 1] with `output_type="pt"`.

        `prompt_embeds` are text states (B, L, d) or a callable t -> states (TimeInv concepts);
        `structure` is (B, C, T, H, W) in [-1, 1] or None for text only; `still` the guide
        clip's still map for `still_hold` (`story.models.still_hold.still_cells`), `still_pixels`
        its still pixels for `pixel_hold` (`still_hold.still_pixels`; decoded output only).
        `deflicker` a deflickers the decoded frames along their own motion
        (`story.models.deflicker`; decoded output only, on the frames as uint8 would deliver them).
        """
        check_pixel_hold(pixel_hold)
        check_deflicker(deflicker)
        after_step = None
        if callback_on_step_end is not None:

            def after_step(step: int, scheduler, x: torch.Tensor) -> torch.Tensor:
                t = int(scheduler.timesteps[step])
                return callback_on_step_end(self, step, t, {"latents": x}).get("latents", x)

        x = sample_latents(
            self.model,
            prompt_embeds,
            negative_prompt_embeds,
            structure,
            steps=steps,
            guidance=guidance,
            tau=tau,
            strength=strength,
            detail=detail,
            temporal_guidance=temporal_guidance,
            noise_share=noise_share,
            noise_warp=noise_warp,
            flow_smoothing=flow_smoothing,
            cross_frame=cross_frame,
            still_hold=still_hold,
            still=still,
            generator=generator,
            latents=latents,
            stats=stats,
            after_step=after_step,
        )
        if output_type == "latent":
            return x
        if output_type == "pt":
            video = self.model.decode_latents(x, structure)
            if pixel_hold and still_pixels is not None:
                video = hold_pixels(video, still_pixels, pixel_hold)
            if deflicker:
                video = deflicker_video(video, deflicker)
            return video
        raise ValueError(f"output_type {output_type!r}: 'latent' or 'pt'")


def sampling_defaults() -> dict[str, Any]:
    """The product's sampling defaults, read from the pipeline's `__call__` signature."""
    parameters = inspect.signature(StructureGuidedPipeline.__call__).parameters
    return {key: parameters[key].default for key in SAMPLING_KEYS}


SAMPLING_DEFAULTS = sampling_defaults()


def implied_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs a call sets plus what they imply. noise_share and noise_warp both correlate the
    start noise across frames, one at a time: a call that sets noise_share (> 0) and not
    noise_warp gets noise_warp 0 instead of the default."""
    settled = dict(knobs)
    if settled.get("noise_share") and "noise_warp" not in settled:
        settled["noise_warp"] = 0.0
    return settled


FORMER_DEFAULTS: dict[str, Any] = {
    "noise_warp": 0.0,
    "carry_warp": False,
    "still_hold": 0.0,
    "long_hold": True,
    "deflicker": 0.0,
}
"""Knobs whose default changed, in the order they changed, at their value before the change.
Renders planned before a change did not record its knob, so a recorded job without one was
rendered at this value (`story.tasks.render.request` records them in every job since).
`carry_warp` is the long shot's (`story.models.long_shot.ReuseDiffuse.carry_warp`), not a
`__call__` parameter: it decides how a shot longer than one clip continues its start noise.
`long_hold` is the long shot's too (`ReuseDiffuse.long_hold`): long shots planned while the hold
applied to them (before it came off for long shots) replay holding. `deflicker` came on at 0.3
on 2026-12-07 (docs/training.md, "Deflickering the delivered frames")."""
