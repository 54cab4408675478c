"""Long shots, clip by clip, with Reuse-and-Diffuse (VidRD).

A shot longer than the model's clip length is rendered as overlapping clips. Each new clip
starts with M prompt frames: the last M latent frames of the clip before it. Three mechanisms
keep the seams invisible:

- frame-level noise reversion: the new clip's starting noise is the previous clip's starting
  noise in reversed frame order (its prompt frames keep the exact noise they were made from);
- past-dependent noise sampling: for the frames after the prompt frames, that reversed noise is
  mixed with fresh noise, `(alpha * reused + fresh) / sqrt(1 + alpha^2)`, so alpha sets how
  much of the past the new frames inherit (0 = fresh noise only);
- denoising with staged guidance: for the first `beta` fraction of the denoising steps the
  prompt frames are pinned to the previous clip's latents, noised to the current step's level;
  afterwards they are left to the model so the new frames and the old ones settle together.

With `noise_warp` w (`story.models.noise_warp`) each start is sqrt(w) x a shared draw carried
along the structure's motion + sqrt(1 - w) x the frames' own noise. With `carry_warp` (the
default) the shared draw is one for the whole shot, carried along the whole guide from its
first frame, and reversion and reuse apply to the own part only: every window reads the same
moving noise where it overlaps its neighbours, as one long clip would. Without it, each window
draws and carries its own shared noise (renders planned before `carry_warp` existed).

The frames of a continued clip that duplicate the prompt frames are dropped when clips are
joined, so the output has exactly the requested length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from diffusers import DDIMScheduler

from story.models.noise_warp import carried_draw, mix_warped
from story.models.sampler import (
    SamplerStats,
    check_one_noise_knob,
    correlate_frames,
    initial_noise,
    sample_latents,
)
from story.models.t2v import StructureT2V


@dataclass(frozen=True)
class ReuseDiffuse:
    """Continuation parameters: M prompt frames, noise reuse alpha, guided fraction beta.

    `long_hold` (off by default since its sealed long-shot run, 2026-12-06): whether
    `still_hold` holds a long shot at all (it lowered seam and within-clip flicker but cost
    within-clip motion past the stop condition written before that run; docs/evaluation.md).
    Long shots planned before record none and replay holding (`pipeline.FORMER_DEFAULTS`).

    `hold_prompt` (off by default; it implies `long_hold`): with `still_hold`, cells the guide
    clip holds still from a window's first frame on are held to the previous window's latents
    for the prompt frames (`story.models.still_hold.hold_still`), not to their own window's
    mean, so a still background continues exactly across the seam (measured on validation:
    seam warp error -4.6%, within-clip warp error +0.3%; docs/evaluation.md)."""

    prompt_frames: int = 2
    alpha: float = 1.0
    beta: float = 0.6
    noise_reversion: bool = True
    carry_warp: bool = True
    hold_prompt: bool = False
    long_hold: bool = False

    @property
    def holds(self) -> bool:
        """Whether `still_hold` holds this long shot (`long_hold`, or `hold_prompt`, which
        implies it)."""
        return self.long_hold or self.hold_prompt

    def check(self, clip_frames: int) -> None:
        if not 1 <= self.prompt_frames < clip_frames:
            raise ValueError(
                f"prompt_frames must be in 1..{clip_frames - 1} for {clip_frames}-frame clips, "
                f"got {self.prompt_frames}"
            )
        if self.alpha < 0 or not 0.0 <= self.beta <= 1.0:
            raise ValueError(
                f"alpha must be >= 0 and beta in [0, 1], got {self.alpha}, {self.beta}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


CONTINUATION_DEFAULTS = {f.name: f.default for f in fields(ReuseDiffuse)}
"""The continuation's defaults by name (beside the pipeline's `SAMPLING_DEFAULTS`)."""


def clip_starts(total: int, length: int, prompt_frames: int) -> list[int]:
    """Start frame of each clip: the first at 0, each next one M frames before the last end."""
    if total <= length:
        return [0]
    starts = [0]
    while starts[-1] + length < total:
        starts.append(min(starts[-1] + length - prompt_frames, total - length))
    return starts


def continuation_noise(
    previous: torch.Tensor,
    params: ReuseDiffuse,
    generator: torch.Generator,
    overlap: int,
    share: float = 0.0,
    warp: float = 0.0,
    structure: torch.Tensor | None = None,
) -> torch.Tensor:
    """Starting noise of the next clip, whose first `overlap` frames repeat the previous clip's
    last ones: those keep their own noise, the rest reuse the reversed past plus fresh noise
    (correlated across frames by `share`, or along the clip's `structure` by `warp`, as the
    first clip's start)."""
    m = overlap
    reused = previous.flip(2) if params.noise_reversion else previous
    fresh = torch.randn(previous.shape, generator=generator, dtype=previous.dtype)
    fresh = correlate_frames(fresh, generator, share, warp, structure)
    mixed = (params.alpha * reused + fresh.to(previous.device)) / math.sqrt(1 + params.alpha**2)
    noise = mixed.clone()
    noise[:, :, :m] = previous[:, :, -m:]
    return noise


class CarriedWarp:
    """One shared draw for a whole long shot, carried along its whole guide (`carry_warp`).

    `start(window_start)` gives a window's full start noise: sqrt(w) x the carried draw's frames
    of that window + sqrt(1 - w) x the window's own part, whose continuation (reversion, reuse,
    kept prompt frames) `continuation_noise` makes from the previous window's own part. The
    first window draws exactly what `initial_noise` draws for it alone (own noise, then the
    shared draw, from the same generator; the flow chain from frame 0 sees only its frames)."""

    def __init__(
        self,
        model: StructureT2V,
        batch: int,
        generator: torch.Generator,
        warp: float,
        structure: torch.Tensor | None,
        total: int,
    ) -> None:
        self.warp, self.device = warp, model.device
        c, _, h, w = model.latent_shape
        self.own = torch.randn((batch, *model.latent_shape), generator=generator)
        shared = torch.randn((batch, c, h, w), generator=generator)
        self.moved = carried_draw(shared, structure, total)

    def continue_own(self, params: ReuseDiffuse, generator: torch.Generator, overlap: int) -> None:
        self.own = continuation_noise(self.own, params, generator, overlap)

    def start(self, window_start: int) -> torch.Tensor:
        length = self.own.shape[2]
        moved = self.moved[:, :, window_start : window_start + length]
        return mix_warped(moved, self.own, self.warp).to(self.device)


def _pin_prompt_frames(prompt: torch.Tensor, noise: torch.Tensor, guided_steps: int):
    """An `after_step` hook holding the first M latent frames on the previous clip's path."""
    m = prompt.shape[2]

    def hook(step: int, scheduler: DDIMScheduler, x: torch.Tensor) -> torch.Tensor:
        if step >= guided_steps:
            return x
        timesteps = scheduler.timesteps
        x = x.clone()
        if step + 1 < len(timesteps):
            level = timesteps[step + 1].reshape(1)
            x[:, :, :m] = scheduler.add_noise(prompt, noise[:, :, :m], level)
        else:
            x[:, :, :m] = prompt
        return x

    return hook


@torch.no_grad()
def sample_long(
    model: StructureT2V,
    text_states: torch.Tensor | Callable[[int], torch.Tensor],
    null_states: torch.Tensor | None,
    structure: torch.Tensor | None,
    total: int,
    *,
    params: ReuseDiffuse | None = None,
    steps: int,
    guidance: float,
    tau: int = 0,
    strength: float = 1.0,
    detail: int = 0,
    temporal_guidance: float = 1.0,
    noise_share: float = 0.0,
    noise_warp: float = 0.0,
    flow_smoothing: float = 0.0,
    cross_frame: float = 0.0,
    still_hold: float = 0.0,
    still: torch.Tensor | None = None,
    seed: int = 0,
    stats: SamplerStats | None = None,
) -> torch.Tensor:
    """Decoded video (B, 3, total, H, W) in [-1, 1]; `structure` (B, C, total, H, W) or None;
    `still` the guide clip's still map over the whole shot, (total, h, w) or (B, total, h, w)."""
    params = params or ReuseDiffuse()
    length = model.config.frames
    params.check(length)
    if total < length:
        raise ValueError(f"a long shot needs at least {length} frames, got {total}")
    check_one_noise_knob(noise_share, noise_warp)
    generator = torch.Generator().manual_seed(seed)
    pieces: list[torch.Tensor] = []
    latents: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    done = 0
    guided_steps = round(params.beta * steps)
    batch = (text_states(999) if callable(text_states) else text_states).shape[0]
    carried = None
    if noise_warp and params.carry_warp:
        whole = None if structure is None else structure.cpu()
        carried = CarriedWarp(model, batch, generator, noise_warp, whole, total)
    if not params.holds:
        still = None  # a long shot holds only when asked (`long_hold`)
    for start in clip_starts(total, length, params.prompt_frames):
        window = None if structure is None else structure[:, :, start : start + length]
        held = None if still is None else still[..., start : start + length, :, :]
        if latents is None:
            if carried is not None:
                noise = carried.start(start)
            else:
                noise = initial_noise(model, batch, generator, noise_share, noise_warp, window)
            hook = None
            anchor = None
        else:
            overlap = done - start
            if carried is not None:
                carried.continue_own(params, generator, overlap)
                noise = carried.start(start)
            else:
                noise = continuation_noise(
                    noise, params, generator, overlap, noise_share, noise_warp, window
                )
            prompt = latents[:, :, length - overlap :]
            hook = _pin_prompt_frames(prompt, noise[:, :, :overlap], guided_steps)
            anchor = prompt if params.hold_prompt else None
        latents = sample_latents(
            model,
            text_states,
            null_states,
            window,
            steps=steps,
            guidance=guidance,
            tau=tau,
            strength=strength,
            detail=detail,
            temporal_guidance=temporal_guidance,
            flow_smoothing=flow_smoothing,
            cross_frame=cross_frame,
            still_hold=still_hold,
            still=held,
            still_prompt=anchor,
            latents=noise,
            stats=stats,
            after_step=hook,
        )
        video = model.decode_latents(latents, window)
        pieces.append(video[:, :, done - start :])
        done = start + length
    return torch.cat(pieces, dim=2)
