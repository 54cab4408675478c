"""DDIM sampling with classifier-free guidance and time-limited structure guidance.

Structure is added only at denoising steps whose timestep t >= `tau` (timestep units, 0..1000;
tau = 0 means every step, tau > the first timestep means never). The StructureEncoder does not
depend on t, so it runs at most once per call, at the first step with t >= tau, and not at all
when no step reaches tau; its features are dropped as soon as t falls below tau. Structure goes
to both halves of the guidance batch: guidance contrasts text with no text, not structure.

`text_states` is a (B, L, d) tensor, or a callable t -> (B, L, d) for conditioning that changes
with the timestep (TimeInv concept tokens); the callable is asked once per denoising step.

Two more knobs follow Gen-1: `detail` blurs the structure (0 = as given, each level halves its
resolution), trading structure fidelity for freedom; `temporal_guidance` w extrapolates the
video prediction away from the per-frame image prediction of the same model (temporal layers
off): cond = image + w (video - image); 1 is the plain video model, > 1 smoother motion, at one
more U-Net call per step. `noise_share` s correlates the starting noise across frames: each
frame's noise is sqrt(s) * one shared draw + sqrt(1 - s) * its own (unit variance kept; 0 is the
plain i.i.d. start and draws exactly the same numbers as before the knob existed).
`noise_warp` w is the same with the shared draw carried along the structure's motion
(`story.models.noise_warp`): calmer at less cost in motion than `noise_share` (measured in
docs/training.md). `flow_smoothing` s acts at every step instead of only on the start: the
model's prediction of the clean latents is averaged, frame with frame, along the structure's
motion (`noise_warp.smooth_along_flow`), and the step proceeds from that prediction; 0 is off.
`cross_frame` c lets each frame's spatial self-attention read the clip's first frame too
(`story.models.cross_frame`): 0 is the trained model exactly, 1 Text2Video-Zero's anchor.
`still_hold` h moves the clean-latent prediction of every cell the guide clip holds still
(`still`, from `story.models.still_hold.still_cells`) h of the way to its mean over the frames
it stays still, at every step and once more on the result; 0 is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from story.models.cross_frame import check_cross_frame, cross_frame_attention
from story.models.noise_warp import (
    check_flow_smoothing,
    check_noise_warp,
    smooth_along_flow,
    structure_flow,
    warp_shared,
)
from story.models.still_hold import check_still_hold, hold_still
from story.models.t2v import StructureT2V


@dataclass
class SamplerStats:
    """What a sampling call did: denoising steps, steps with structure, encoder runs."""

    steps: int = 0
    structure_steps: int = 0
    encoder_runs: int = 0


def check_noise_share(share: float) -> None:
    if not 0.0 <= share < 1.0:
        raise ValueError(f"noise_share must be in [0, 1), got {share}")


def share_across_frames(
    noise: torch.Tensor, share: float, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, C, T, h, w) unit noise -> sqrt(s) * one draw shared by all frames + sqrt(1 - s) * noise.

    The shared draw comes after `noise` from the same generator, so s = 0 changes nothing."""
    check_noise_share(share)
    if share == 0.0:
        return noise
    b, c, _, h, w = noise.shape
    shared = torch.randn((b, c, 1, h, w), generator=generator, dtype=noise.dtype)
    return share**0.5 * shared.to(noise.device) + (1.0 - share) ** 0.5 * noise


def check_one_noise_knob(share: float, warp: float) -> None:
    """noise_share and noise_warp both correlate the start across frames: one at a time."""
    if share and warp:
        raise ValueError(
            "noise_share and noise_warp: use one of them (noise_warp is on by default: "
            "pass noise_warp=0 with noise_share)"
        )


def correlate_frames(
    noise: torch.Tensor,
    generator: torch.Generator | None,
    share: float = 0.0,
    warp: float = 0.0,
    structure: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, C, T, h, w) i.i.d. unit noise correlated across frames by `share`
    (`share_across_frames`) or along the structure's motion by `warp` (`noise_warp.warp_shared`),
    one of the two; both 0 return `noise` and draw nothing more."""
    check_one_noise_knob(share, warp)
    noise = share_across_frames(noise, share, generator)
    return warp_shared(noise, warp, structure, generator)


def initial_noise(
    model: StructureT2V,
    batch: int,
    generator: torch.Generator | None,
    share: float = 0.0,
    warp: float = 0.0,
    structure: torch.Tensor | None = None,
) -> torch.Tensor:
    """Seeded starting latents, drawn on the CPU so every device gets the same numbers, then
    correlated across frames as `correlate_frames` says."""
    shape = (batch, *model.latent_shape)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return correlate_frames(noise, generator, share, warp, structure).to(model.device)


@torch.no_grad()
def sample_latents(
    model: StructureT2V,
    text_states: torch.Tensor | Callable[[int], torch.Tensor],
    null_states: torch.Tensor | None = None,
    structure: torch.Tensor | None = None,
    *,
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
    still_prompt: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    stats: SamplerStats | None = None,
    after_step: Callable[[int, DDIMScheduler, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Denoise (B, C, T, h, w) latents for B prompts; `structure`: (B, C_s, T, H, W) in [-1, 1].

    `noise_share` and `noise_warp` apply only when the sampler draws the start itself
    (`latents` is None). `still_hold` holds the cells `still` marks, (T, h, w) or (B, T, h, w)
    bool on the latent grid; without a still map, or without a structure, nothing is known to be
    still and nothing is held (as `noise_warp` without a structure has no motion to follow).
    `still_prompt` (B, C, M, h, w), a long shot's prompt frames: held cells still from the
    first frame on are held to them (`story.models.still_hold.hold_still`).
    `after_step(step_index, scheduler, x)` may edit the latents after each denoising step (the
    long-shot continuation pins its prompt frames this way).
    """
    if not 0 <= tau <= 1000:
        raise ValueError(f"tau must be a timestep in 0..1000, got {tau}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if detail < 0:
        raise ValueError(f"detail must be a level >= 0, got {detail}")
    check_noise_share(noise_share)
    check_noise_warp(noise_warp)
    check_flow_smoothing(flow_smoothing)
    check_cross_frame(cross_frame)
    check_still_hold(still_hold)
    if structure is None:
        still = None
    stats = stats if stats is not None else SamplerStats()
    per_step = callable(text_states)
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps, device=model.device)
    if per_step:
        text_at = text_states
        text_states = text_at(int(scheduler.timesteps[0]))
    batch = text_states.shape[0]
    use_cfg = guidance != 1.0
    if use_cfg and null_states is None:
        raise ValueError("classifier-free guidance (guidance != 1) needs null_states")
    if use_cfg and null_states.shape[0] != batch:
        null_states = null_states.expand(batch, -1, -1)
    if latents is None:
        x = initial_noise(model, batch, generator, noise_share, noise_warp, structure)
    else:
        x = latents.to(model.device)
    x = x * scheduler.init_noise_sigma
    flows = None
    if flow_smoothing:
        flows = _smoothing_flows(x, structure)
    states = torch.cat([null_states, text_states]) if use_cfg else text_states
    states = states.to(model.device)
    guided = structure is not None and strength != 0.0
    features = None
    with cross_frame_attention(model.unet, x.shape[2], cross_frame):
        for step, t in enumerate(scheduler.timesteps):
            if guided and int(t) >= tau:
                if features is None:
                    features = model.encode_structure(structure, detail)
                    stats.encoder_runs += 1
                stats.structure_steps += 1
                active = features
            else:
                features = None
                active = None
            if per_step:
                text_t = text_at(int(t))
                states = (torch.cat([null_states, text_t]) if use_cfg else text_t).to(model.device)
            x_in = torch.cat([x, x]) if use_cfg else x
            t_in = t.expand(x_in.shape[0])
            pred = model.predict(x_in, t_in, states, active, strength)
            uncond, cond = pred.chunk(2) if use_cfg else (None, pred)
            if temporal_guidance != 1.0:
                text_only = states[batch:] if use_cfg else states
                image = model.predict(
                    x, t.expand(batch), text_only, active, strength, temporal=False
                )
                cond = image + temporal_guidance * (cond - image)
            pred = uncond + guidance * (cond - uncond) if use_cfg else cond
            if flows is not None:
                pred = _edited_prediction(
                    scheduler, pred, x, t, lambda c: smooth_along_flow(c, flows, flow_smoothing)
                )
            if still_hold and still is not None:
                pred = _edited_prediction(
                    scheduler, pred, x, t, lambda c: hold_still(c, still, still_hold, still_prompt)
                )
            x = scheduler.step(pred, t, x).prev_sample
            if after_step is not None:
                x = after_step(step, scheduler, x)
            stats.steps += 1
    if still_hold and still is not None:
        # DDIM's last step still adds sqrt(1 - alpha_0) of each frame's own noise estimate.
        x = hold_still(x, still, still_hold, still_prompt)
    return x


def _smoothing_flows(
    x: torch.Tensor, structure: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flows `smooth_along_flow` follows: the structure's, forwards and reversed (none
    without a structure: the frames are averaged in place)."""
    b, _, frames, h, w = x.shape
    if structure is None:
        still = torch.zeros(b, frames, 2, h, w)
        return still, still
    forward = structure_flow(structure, (h, w))
    backward = structure_flow(structure.flip(2), (h, w))
    return forward.to(x.device), backward.to(x.device)


def _edited_prediction(
    scheduler: DDIMScheduler,
    pred: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    edit: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The model output whose clean-latent prediction is `edit` of its own (v or epsilon)."""
    a = scheduler.alphas_cumprod[int(t)].to(x)
    signal, noise = a.sqrt(), (1 - a).sqrt()
    if scheduler.config.prediction_type == "v_prediction":
        clean = signal * x - noise * pred
    elif scheduler.config.prediction_type == "epsilon":
        clean = (x - noise * pred) / signal
    else:
        raise ValueError(f"prediction type {scheduler.config.prediction_type!r}: v or epsilon")
    smooth = edit(clean)
    if scheduler.config.prediction_type == "v_prediction":
        return (signal * x - smooth) / noise
    return (x - signal * smooth) / noise
