"""Render a prompt on a structure guide: the synthesis step of a shot.

`synthesize` takes a prompt and a (T, H, W) structure map in [-1, 1] (normalised disparity, the
depth step's output) and returns uint8 frames. The model renders `config.frames` frames at a time;
a longer guide is continued clip by clip with Reuse-and-Diffuse (`story.models.long_shot`).

Prompts may name character concepts `<name>` once their packs are loaded on the model
(`story.tasks.concepts.runtime.load_concepts`): the prompt then conditions per timestep (TimeInv).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from story.models.deflicker import check_deflicker
from story.models.deflicker import deflicker as deflicker_frames
from story.models.long_shot import ReuseDiffuse, sample_long
from story.models.pipeline import SAMPLING_DEFAULTS as DEFAULTS
from story.models.pipeline import implied_knobs
from story.models.sampler import SamplerStats, sample_latents
from story.models.still_hold import check_pixel_hold, hold_pixels
from story.models.t2v import StructureT2V
from story.models.timeinv import concept_names
from story.models.vae import vae_output_to_frames
from story.tasks.render.checkpoints import resolve_checkpoint


def load_t2v(
    spec: str | Path = "tiny", checkpoints: str | Path | None = None, device: str = "auto"
) -> StructureT2V:
    """A checkpoint name (a zoo preset such as `tiny`, or a folder name) under `checkpoints`
    (default: the settings') -> that model, as `story render` resolves it; a folder -> that
    checkpoint."""
    if "/" not in str(spec) and not Path(spec).is_dir():
        if checkpoints is None:
            from story.tasks.settings import get_settings

            checkpoints = get_settings().checkpoints
        spec = resolve_checkpoint(str(spec), checkpoints)
    return StructureT2V.from_pretrained(spec, device=device)


def resize_structure(structure: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(T, H, W) or (T, C, H, W) structure -> (C, T, height, width) float tensor."""
    x = torch.as_tensor(np.asarray(structure), dtype=torch.float32)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise ValueError(f"structure must be (T, H, W) or (T, C, H, W), got {tuple(x.shape)}")
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.permute(1, 0, 2, 3).clamp(-1, 1)


@contextmanager
def prompt_conditioning(
    model: StructureT2V, prompt: str
) -> Iterator[torch.Tensor | Callable[[int], torch.Tensor]]:
    """A prompt's text states; per timestep (with the concepts' LoRA on) while it names concepts
    loaded on `model`, which are switched off again on leaving the block."""
    concepts = getattr(model, "concepts", None)
    if concepts is not None:
        with concepts.applied(prompt) as states:
            yield states
        return
    if concept_names(prompt):
        raise ValueError(
            f"prompt {prompt!r} names concept(s) {concept_names(prompt)} but no concept pack is "
            "loaded on this model: shots and stories load them by name (`story concept list`); "
            "in code, story.tasks.concepts.runtime.load_concepts(model, packs) first"
        )
    yield model.encode_prompts([prompt])


def default_continuation(clip_frames: int) -> ReuseDiffuse:
    """Reuse-and-Diffuse defaults, with M prompt frames capped below the model's clip length."""
    return ReuseDiffuse(prompt_frames=min(ReuseDiffuse.prompt_frames, clip_frames - 1))


def _warp(noise_share: float, noise_warp: float | None) -> float:
    """noise_warp as given, or what a call setting only `noise_share` implies."""
    if noise_warp is not None:
        return noise_warp
    return float(
        implied_knobs({"noise_share": noise_share}).get("noise_warp", DEFAULTS["noise_warp"])
    )


def _pad_still(still: torch.Tensor, length: int) -> torch.Tensor:
    """A still map cut or padded to `length` frames; frames past the clip's end (a short guide
    padded with its last frame) are still."""
    if len(still) < length:
        still = torch.cat([still, still.new_ones(length - len(still), *still.shape[1:])])
    return still[:length]


def _guide_stills(
    model: StructureT2V,
    frames: np.ndarray,
    *,
    cells: int | None = None,
    pixels: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The guide clip's still map on the model's latent grid for `still_hold` ((cells, h, w)) and
    its still pixels at the model's resolution for `pixel_hold` ((pixels, H, W)), each only when
    its length is given, from one read of the guide's motion."""
    from story.models.still_hold import cells_from_moving, moving_pixels, pixels_from_moving

    if cells is None and pixels is None:
        return None, None
    cfg = model.config
    moving = moving_pixels(frames, (cfg.height, cfg.width))
    h, w = model.latent_shape[-2:]
    held = None if cells is None else _pad_still(cells_from_moving(moving, (h, w)), cells)
    kept = None if pixels is None else _pad_still(pixels_from_moving(moving), pixels)
    return held, kept


@torch.no_grad()
def synthesize(
    model: StructureT2V,
    prompt: str,
    structure: np.ndarray | None,
    *,
    frames: int | None = None,
    seed: int = 0,
    steps: int = DEFAULTS["steps"],
    guidance: float = DEFAULTS["guidance"],
    tau: int = DEFAULTS["tau"],
    strength: float = DEFAULTS["strength"],
    detail: int = DEFAULTS["detail"],
    temporal_guidance: float = DEFAULTS["temporal_guidance"],
    noise_share: float = DEFAULTS["noise_share"],
    noise_warp: float | None = None,
    flow_smoothing: float = DEFAULTS["flow_smoothing"],
    cross_frame: float = DEFAULTS["cross_frame"],
    still_hold: float = DEFAULTS["still_hold"],
    pixel_hold: float = DEFAULTS["pixel_hold"],
    deflicker: float = DEFAULTS["deflicker"],
    guide_frames: np.ndarray | None = None,
    negative_prompt: str = "",
    size: tuple[int, int] | None = None,
    stats: SamplerStats | None = None,
    continuation: ReuseDiffuse | None = None,
) -> np.ndarray:
    """Prompt + (T, H, W) guide in [-1, 1] (None: text only) -> (T, H', W', 3) uint8 frames.

    `frames` sets T when there is no guide (default: the model's clip length); `size` resizes
    the output (H', W'), default the model's resolution. A T longer than the model's clip is
    continued clip by clip with Reuse-and-Diffuse (`continuation`, default
    `default_continuation`); a shorter guide is padded with its last frame. `noise_warp` None
    is the default, or 0 when `noise_share` is set (`pipeline.implied_knobs`). `guide_frames`
    (T, H, W, 3), the clip the guide was estimated from, says where `still_hold` holds the
    picture still; without it nothing is held (depth alone cannot tell a still camera from a pan
    over flat ground, so the hold never reads stillness from the guide itself). `pixel_hold`
    holds the decoded frames' still pixels the same way (`still_hold.hold_pixels`), where and
    when `still_hold` would hold. `deflicker` a deflickers the delivered frames (after the output
    resize, over the whole shot, so a long shot's seams too) along their own motion
    (`story.models.deflicker`).
    """
    check_pixel_hold(pixel_hold)
    check_deflicker(deflicker)
    noise_warp = _warp(noise_share, noise_warp)
    cfg = model.config
    if structure is not None:
        guide = resize_structure(structure, cfg.height, cfg.width)
        if guide.shape[0] != cfg.structure_channels:
            raise ValueError(
                f"structure has {guide.shape[0]} channels, the model takes {cfg.structure_channels}"
            )
        total = guide.shape[1]
    else:
        guide = None
        total = frames or cfg.frames
    if total < 1:
        raise ValueError("nothing to render: the guide has no frames")
    continuation = continuation or default_continuation(cfg.frames)
    still = pixels = None
    holds = total <= cfg.frames or continuation.holds  # a long shot holds only when asked
    if holds and guide is not None and guide_frames is not None:
        still, pixels = _guide_stills(
            model,
            guide_frames,
            cells=max(total, cfg.frames) if still_hold else None,
            pixels=total if pixel_hold else None,
        )
    with prompt_conditioning(model, prompt) as text:
        null = model.encode_prompts([negative_prompt])
        if total > cfg.frames:
            video = sample_long(
                model,
                text,
                null,
                None if guide is None else guide[None].to(model.device),
                total,
                params=continuation,
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
                seed=seed,
                stats=stats,
            )[0].permute(1, 0, 2, 3)
        else:
            window = None
            if guide is not None:
                pad = guide[:, -1:].expand(-1, cfg.frames - total, -1, -1)
                window = torch.cat([guide, pad], dim=1)[None]
            latents = sample_latents(
                model,
                text,
                null,
                window,
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
                generator=torch.Generator().manual_seed(seed),
                stats=stats,
            )
            video = model.decode_latents(latents, window)[0].permute(1, 0, 2, 3)[:total]
    if pixels is not None:  # video: (T, C, H, W)
        video = hold_pixels(video.permute(1, 0, 2, 3)[None], pixels, pixel_hold)[0]
        video = video.permute(1, 0, 2, 3)
    if size is not None and tuple(size) != tuple(video.shape[-2:]):
        video = F.interpolate(video, size=tuple(size), mode="bilinear", align_corners=False)
    return deflicker_frames(vae_output_to_frames(video).cpu().numpy(), deflicker)


@torch.no_grad()
def render_batch(
    model: StructureT2V,
    prompts: list[str],
    structures: torch.Tensor | None,
    *,
    seed: int = 0,
    steps: int = DEFAULTS["steps"],
    guidance: float = DEFAULTS["guidance"],
    tau: int = DEFAULTS["tau"],
    strength: float = DEFAULTS["strength"],
    detail: int = DEFAULTS["detail"],
    temporal_guidance: float = DEFAULTS["temporal_guidance"],
    noise_share: float = DEFAULTS["noise_share"],
    noise_warp: float | None = None,
    flow_smoothing: float = DEFAULTS["flow_smoothing"],
    cross_frame: float = DEFAULTS["cross_frame"],
    still_hold: float = DEFAULTS["still_hold"],
    pixel_hold: float = DEFAULTS["pixel_hold"],
    deflicker: float = DEFAULTS["deflicker"],
    guide_frames: list[np.ndarray] | None = None,
    stats: SamplerStats | None = None,
) -> np.ndarray:
    """Several model-length clips at once: (B, T, H, W, 3) uint8; `structures` (B, C, T, H, W);
    `guide_frames` the clips the structures came from, one per prompt (for `still_hold` and
    `pixel_hold`); `deflicker` as in `synthesize`, clip by clip."""
    check_pixel_hold(pixel_hold)
    check_deflicker(deflicker)
    noise_warp = _warp(noise_share, noise_warp)
    still = pixels = None
    if (still_hold or pixel_hold) and structures is not None and guide_frames is not None:
        frames = model.config.frames
        maps = [
            _guide_stills(
                model,
                clip,
                cells=frames if still_hold else None,
                pixels=frames if pixel_hold else None,
            )
            for clip in guide_frames
        ]
        still = torch.stack([held for held, _ in maps]) if still_hold else None
        pixels = torch.stack([kept for _, kept in maps]) if pixel_hold else None
    text = model.encode_prompts(prompts)
    null = model.encode_prompts([""])
    generator = torch.Generator().manual_seed(seed)
    latents = sample_latents(
        model,
        text,
        null,
        structures,
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
        stats=stats,
    )
    video = model.decode_latents(latents, structures)
    if pixels is not None:
        video = hold_pixels(video, pixels, pixel_hold)
    clips = vae_output_to_frames(video.permute(0, 2, 1, 3, 4)).cpu().numpy()
    return np.stack([deflicker_frames(clip, deflicker) for clip in clips])
