"""Quality of a rendered clip read from its pixels, using the miniature world's scene grammar.

Prompt adherence: the main object's colour (per-pixel hue votes inside the object region) and the
background (ground and sky colours calibrated on rendered scenes). Structure adherence: the IoU of
the pixels painted in the prompt colour with the guide's object mask, and, given a depth
estimator, the error between the render's estimated depth and the guide. Temporal consistency:
frame-to-frame change of the render relative to the real clip's, and the warp error
(`temporal.clip_temporal`: what the optical flow cannot explain) relative to the real clip's, the
same ratio the evaluation reports, so a training curve tracks the flicker target itself.

These pixel rules are quick checks for training curves (`train_t2v`, `bench_concepts`). They have
known blind spots (the palette rule calls grass and sand "yellow"; frame change counts motion as
flicker), so reported figures come from the judge and warp error (`story eval`, `clip_scores`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from story.tasks.evaluation.temporal import clip_temporal
from story.tasks.world import miniworld

COLOUR_NAMES: tuple[str, ...] = tuple(miniworld.COLOURS)
_PALETTE = np.array([miniworld.COLOURS[n] for n in COLOUR_NAMES], np.float64)
_NEUTRAL = ("white", "black")
_CHROMATIC = np.array([i for i, n in enumerate(COLOUR_NAMES) if n not in _NEUTRAL])
_NEUTRAL_SHARE = 0.75


def pixel_colour_labels(frames: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> palette index per pixel: hue direction if chromatic, else brightness."""
    px = frames.reshape(-1, 3).astype(np.float64)
    unit = px / (np.linalg.norm(px, axis=1, keepdims=True) + 1e-6)
    palette = _PALETTE / np.linalg.norm(_PALETTE, axis=1, keepdims=True)
    chroma = _CHROMATIC[(unit @ palette[_CHROMATIC].T).argmax(1)]
    grey = (px.max(1) - px.min(1)) < 0.25 * px.max(1) + 8
    neutral = np.where(px.mean(1) > 80, COLOUR_NAMES.index("white"), COLOUR_NAMES.index("black"))
    return np.where(grey, neutral, chroma).reshape(frames.shape[:-1])


def colour_votes(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) RGB -> number of pixels labelled with each palette colour."""
    return np.bincount(pixel_colour_labels(pixels).ravel(), minlength=len(COLOUR_NAMES))


def dominant_colour(pixels: np.ndarray) -> str | None:
    """The object colour a viewer would name: the top hue vote; white / black only if dominant."""
    ranked = ranked_colours(pixels)
    return ranked[0] if ranked else None


def ranked_colours(pixels: np.ndarray) -> list[str]:
    """Palette colours by votes, chromatic first unless white / black clearly dominate."""
    votes = colour_votes(pixels).astype(np.float64)
    if votes.sum() == 0:
        return []
    neutral = [COLOUR_NAMES.index(n) for n in _NEUTRAL]
    if votes[neutral].sum() <= _NEUTRAL_SHARE * votes.sum():
        votes[neutral] *= 1e-3
    order = np.argsort(-votes, kind="stable")
    return [COLOUR_NAMES[i] for i in order if votes[i] > 0]


def _background_features(frames: np.ndarray) -> np.ndarray:
    """Mean RGB of the top fifth (sky) and bottom third (ground) of every frame."""
    h = frames.shape[1]
    sky = frames[:, : max(1, h // 5)].reshape(-1, 3).mean(0)
    ground = frames[:, h - max(1, h // 3) :].reshape(-1, 3).mean(0)
    return np.concatenate([sky, ground]).astype(np.float64)


@lru_cache(maxsize=8)
def _background_centroids(
    height: int, width: int, n: int = 64
) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-background feature centroids measured on rendered training scenes of this size."""
    names = tuple(miniworld.BACKGROUNDS)
    sums = {name: [] for name in names}
    for name in names:
        for seed in range(n // len(names)):
            spec = miniworld.sample_scene(
                seed, frames=4, height=height, width=width, background=name
            )
            sums[name].append(_background_features(miniworld.render(spec).rgb))
    return names, np.stack([np.mean(sums[name], 0) for name in names])


def background_of(frames: np.ndarray) -> str:
    """The background (grass, sand, snow, dusk) whose calibrated sky/ground colours are nearest."""
    names, centroids = _background_centroids(frames.shape[1], frames.shape[2])
    feature = _background_features(frames)
    return names[int(((centroids - feature) ** 2).sum(1).argmin())]


def colour_mask_iou(frames: np.ndarray, colour: str, mask: np.ndarray) -> float:
    """IoU between the pixels painted in `colour` and a (T, H, W) bool object mask."""
    painted = pixel_colour_labels(frames) == COLOUR_NAMES.index(colour)
    union = np.logical_or(painted, mask).sum()
    return float(np.logical_and(painted, mask).sum() / union) if union else 0.0


def temporal_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames, in [0, 1]."""
    if len(frames) < 2:
        return 0.0
    x = frames.astype(np.float32) / 255.0
    return float(np.abs(np.diff(x, axis=0)).mean())


def depth_error(estimated: np.ndarray, guide: np.ndarray) -> float:
    """Mean absolute error of two (T, H, W) disparity maps in [-1, 1], halved to [0, 1]."""
    return float(np.abs(estimated - guide).mean() / 2.0)


@dataclass
class ClipQuality:
    """Per-clip quality of a render against its prompt attributes and its guide."""

    colour_ok: float  # prompt colour among the two most painted non-background colours
    colour_in_place_ok: float
    background_ok: float
    object_iou: float
    temporal_ratio: float
    depth_error: float | None = None
    object_depth_error: float | None = None
    warp_ratio: float | None = None  # warp error over the reference clip's (`temporal`)

    def to_dict(self) -> dict:
        return asdict(self)


def clip_quality(
    render: np.ndarray,
    colour: str,
    background: str,
    object_mask: np.ndarray,
    reference: np.ndarray | None = None,
    guide: np.ndarray | None = None,
    estimate_depth: Callable[[np.ndarray], np.ndarray] | None = None,
    objects: np.ndarray | None = None,
) -> ClipQuality:
    """Score one (T, H, W, 3) uint8 render; `object_mask` is the guide's main-object mask,
    `objects` (all objects) restricts a second depth error to where the guide has objects."""
    h, w = render.shape[1:3]
    sky_rows = max(1, h // 5)
    body = render[:, sky_rows:]
    anywhere = ranked_colours(body[~_background_like(body, background)])[:2]
    in_place = dominant_colour(render[object_mask]) if object_mask.any() else None
    ref_change = temporal_change(reference) if reference is not None else 0.0
    change = temporal_change(render)
    warp_ratio = None
    if reference is not None and len(render) > 1 and len(reference) > 1:
        ref_warp = clip_temporal(reference)["warp_error"]
        if ref_warp > 0:
            warp_ratio = clip_temporal(render)["warp_error"] / ref_warp
    error = object_error = None
    if estimate_depth is not None and guide is not None:
        estimated = estimate_depth(render)
        error = depth_error(estimated, guide)
        if objects is not None and objects.any():
            object_error = depth_error(estimated[objects], guide[objects])
    return ClipQuality(
        colour_ok=float(colour in anywhere),
        colour_in_place_ok=float(in_place == colour),
        background_ok=float(background_of(render) == background),
        object_iou=colour_mask_iou(render, colour, object_mask),
        temporal_ratio=change / ref_change if ref_change > 0 else float(change == 0),
        depth_error=error,
        object_depth_error=object_error,
        warp_ratio=warp_ratio,
    )


def _background_like(frames: np.ndarray, background: str, tolerance: float = 45.0) -> np.ndarray:
    """Pixels within `tolerance` RGB distance of the background's ground or sky colour."""
    ground, sky = (np.array(c, np.float64) for c in miniworld.BACKGROUNDS[background])
    px = frames.astype(np.float64)
    near_ground = np.linalg.norm(px - ground, axis=-1) < tolerance
    near_sky = np.linalg.norm(px - sky, axis=-1) < tolerance
    return near_ground | near_sky


def scene_quality(
    renders: list[np.ndarray] | np.ndarray,
    scenes: list[miniworld.RenderedClip],
    guides: list[np.ndarray] | np.ndarray,
    estimate_depth: Callable[[np.ndarray], np.ndarray] | None = None,
    object_depth: bool = False,
) -> list[ClipQuality]:
    """Score renders of miniature-world scenes against each scene's truth (main object colour,
    background, mask, frames) and its structure guide; `object_depth` adds the on-object error."""
    return [
        clip_quality(
            render,
            scene.spec.objects[0].colour,
            scene.spec.background,
            scene.masks == 1,
            reference=scene.rgb,
            guide=guide,
            estimate_depth=estimate_depth,
            objects=scene.masks > 0 if object_depth else None,
        )
        for render, scene, guide in zip(renders, scenes, guides, strict=True)
    ]


def mean_quality(rows: list[ClipQuality]) -> dict[str, float]:
    """Average each metric over clips (depth error only where measured)."""
    out: dict[str, float] = {}
    for key in ClipQuality.__dataclass_fields__:
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
        if values:
            out[key] = float(np.mean(values))
    return out


def shape_in_place(render: np.ndarray, colour: str, spec: miniworld.SceneSpec) -> str | None:
    """The shape whose silhouette, re-rendered in the same scene, best matches the pixels painted
    in the prompt colour (None when nothing is painted in it)."""
    from dataclasses import replace

    painted = pixel_colour_labels(render) == COLOUR_NAMES.index(colour)
    if not painted.any():
        return None
    best, best_iou = None, -1.0
    for shape in miniworld.SHAPES:
        objects = (replace(spec.objects[0], shape=shape), *spec.objects[1:])
        mask = miniworld.render(replace(spec, objects=objects)).masks == 1
        union = np.logical_or(painted, mask).sum()
        iou = np.logical_and(painted, mask).sum() / union if union else 0.0
        if iou > best_iou:
            best, best_iou = shape, iou
    return best
