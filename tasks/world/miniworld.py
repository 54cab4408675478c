"""The miniature world: a seeded, vectorised renderer of short clips of simple 3D scenes.

A pinhole camera at a fixed height looks slightly down on a textured ground plane; 1-3
objects (spheres, cubes, vertical cylinders, cones) with colours and textures move over it
while the camera holds still, pans or zooms. Every pixel of every frame is ray-cast
analytically in one numpy pass, so each clip comes with exact depth (distance along the
camera axis) and object masks, and a caption from the scene grammar (`story.tasks.world.captions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from story.tasks.errors import StoryError
from story.tasks.world import captions as grammar

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 210, 30),
    "purple": (135, 50, 175),
    "orange": (245, 125, 20),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")
MOTIONS: tuple[str, ...] = ("static", "sideways", "towards", "away", "bouncing", "circling")
CAMERAS: tuple[str, ...] = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out")
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "grass": ((92, 128, 62), (135, 190, 235)),
    "sand": ((200, 178, 128), (120, 180, 240)),
    "snow": ((222, 228, 236), (150, 175, 205)),
    "dusk": ((78, 64, 74), (235, 135, 95)),
}

FAR = 50.0
"""Depth given to sky pixels (and the cap for the far ground)."""
CAMERA_HEIGHT = 1.2
PITCH_DEG = 14.0
HFOV_DEG = 55.0
PAN_DEG = 10.0
ZOOM = 1.5
_LIGHT = tuple(float(v) for v in np.array([-0.6, 0.7, -0.4]) / np.linalg.norm([-0.6, 0.7, -0.4]))
_AMBIENT = 0.3
# Colours too close to a ground to stand out on it are not sampled together with it.
CLASHES = {"grass": {"green"}, "snow": {"white"}, "dusk": {"black"}, "sand": set()}


class SceneError(StoryError, ValueError):
    """A scene spec or a request for one names an unknown attribute or an impossible value."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object: what it looks like, how it moves, where it starts (ground x, depth z)."""

    shape: str
    colour: str
    texture: str
    motion: str
    size: float
    x: float
    z: float
    phase: float
    secondary: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in (
            ("shape", SHAPES),
            ("colour", tuple(COLOURS)),
            ("texture", TEXTURES),
            ("motion", MOTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise SceneError(f"object {name} {getattr(self, name)!r}: not one of {allowed}")
        if self.secondary is not None and self.secondary not in COLOURS:
            raise SceneError(f"object secondary colour {self.secondary!r}: not a known colour")
        if not self.size > 0:
            raise SceneError(f"object size {self.size}: must be positive")

    @property
    def second_colour(self) -> str:
        """The pattern colour of a textured object (explicit, or white / black for contrast)."""
        if self.secondary is not None:
            return self.secondary
        return "black" if self.colour in ("white", "yellow") else "white"


@dataclass(frozen=True)
class SceneSpec:
    """Everything that determines a clip; `render(spec)` is a pure function of it."""

    seed: int
    objects: tuple[ObjectSpec, ...]
    background: str
    camera: str
    frames: int = 16
    height: int = 64
    width: int = 64
    fps: float = 8.0

    def __post_init__(self) -> None:
        if not self.objects:
            raise SceneError("scene has no objects: at least one (the main object) is needed")
        if self.background not in BACKGROUNDS:
            raise SceneError(
                f"scene background {self.background!r}: not one of {tuple(BACKGROUNDS)}"
            )
        if self.camera not in CAMERAS:
            raise SceneError(f"scene camera {self.camera!r}: not one of {CAMERAS}")
        if self.frames < 1 or self.height < 2 or self.width < 2 or not self.fps > 0:
            raise SceneError(
                f"scene size {self.frames}x{self.height}x{self.width} at {self.fps} fps: "
                "needs >= 1 frame, >= 2x2 pixels and a positive fps"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `SceneSpec.from_dict` restores an equal spec."""
        data = asdict(self)
        data["objects"] = [asdict(o) for o in self.objects]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Rebuild a spec from `to_dict` output (e.g. after a JSON round trip)."""
        try:
            objects = tuple(ObjectSpec(**o) for o in data["objects"])
            rest = {k: v for k, v in data.items() if k != "objects"}
            return cls(objects=objects, **rest)
        except (KeyError, TypeError) as exc:
            raise SceneError(f"scene spec dict is malformed: {exc}") from exc


@dataclass
class RenderedClip:
    """A rendered clip: RGB (T,H,W,3) uint8, depth (T,H,W) float32, masks (T,H,W) uint8."""

    spec: SceneSpec
    rgb: np.ndarray
    depth: np.ndarray
    masks: np.ndarray
    caption: str


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def sample_scene(
    seed: int,
    *,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    n_objects: int | None = None,
    **fixed: str,
) -> SceneSpec:
    """A random scene, deterministic in `seed` (and in what `fixed` pins).

    `fixed` pins attributes of the main object (shape, colour, texture, motion, secondary)
    or of the scene (background, camera); colours that would vanish on the ground are avoided
    unless both are pinned.
    """
    vocab = {
        "shape": SHAPES,
        "colour": tuple(COLOURS),
        "secondary": tuple(COLOURS),
        "texture": TEXTURES,
        "motion": MOTIONS,
        "background": tuple(BACKGROUNDS),
        "camera": CAMERAS,
    }
    unknown = set(fixed) - set(vocab)
    if unknown:
        raise SceneError(f"sample_scene: unknown attribute(s) {sorted(unknown)}")
    for key, value in fixed.items():
        if value not in vocab[key]:
            raise SceneError(f"sample_scene: {key}={value!r} is not one of {vocab[key]}")
    if n_objects is not None and not 1 <= n_objects <= 3:
        raise SceneError(f"sample_scene: n_objects={n_objects}, must be 1, 2 or 3")
    rng = np.random.default_rng([seed, 20_251_122])
    count = int(rng.integers(1, 4)) if n_objects is None else n_objects
    background = fixed.get("background") or _pick(rng, tuple(BACKGROUNDS))
    camera = fixed.get("camera") or _pick(rng, CAMERAS)
    if "colour" in fixed and "background" not in fixed:
        while fixed["colour"] in CLASHES[background]:
            background = _pick(rng, tuple(BACKGROUNDS))
    clash = set() if "background" in fixed and "colour" in fixed else CLASHES[background]
    free_colours = [c for c in COLOURS if c not in clash]
    motion = fixed.get("motion") or _pick(rng, MOTIONS)
    main = ObjectSpec(
        shape=fixed.get("shape") or _pick(rng, SHAPES),
        colour=fixed.get("colour") or _pick(rng, free_colours),
        texture=fixed.get("texture") or _pick(rng, TEXTURES),
        motion=motion,
        size=float(rng.uniform(0.45, 0.65)),
        x=float(rng.uniform(-0.5, 0.5)),
        z=float(rng.uniform(4.0, 5.5)),
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        secondary=fixed.get("secondary"),
    )
    objects = [main]
    sides = [-1.0, 1.0] if rng.random() < 0.5 else [1.0, -1.0]
    for side in sides[: count - 1]:
        objects.append(
            ObjectSpec(
                shape=_pick(rng, SHAPES),
                colour=_pick(rng, [c for c in free_colours if c != main.colour]),
                texture=_pick(rng, TEXTURES),
                motion=_pick(rng, ("static", "static", "bouncing")),
                size=float(rng.uniform(0.3, 0.5)),
                x=side * float(rng.uniform(1.7, 2.1)),
                z=float(rng.uniform(5.0, 7.5)),
                phase=float(rng.uniform(0.0, 2.0 * math.pi)),
            )
        )
    return SceneSpec(
        seed=seed,
        objects=tuple(objects),
        background=background,
        camera=camera,
        frames=frames,
        height=height,
        width=width,
    )


def sideways_direction(obj: ObjectSpec) -> int:
    """-1 when a sideways object moves left (towards -x), +1 when it moves right."""
    return 1 if obj.phase < math.pi else -1


def object_track(obj: ObjectSpec, frames: int) -> np.ndarray:
    """Centre of the object per frame, (T, 3) world x (right), y (up), z (forward)."""
    u = np.arange(frames, dtype=np.float64) / max(frames - 1, 1)
    x = np.full(frames, obj.x)
    y = np.full(frames, obj.size)
    z = np.full(frames, obj.z)
    if obj.motion == "sideways":
        x = obj.x + sideways_direction(obj) * 1.6 * (u - 0.5)
    elif obj.motion == "towards":
        z = obj.z + 1.5 - 3.0 * u
    elif obj.motion == "away":
        z = obj.z - 1.5 + 3.0 * u
    elif obj.motion == "bouncing":
        y = obj.size + 0.7 * np.abs(np.sin(2.0 * math.pi * u + obj.phase))
    elif obj.motion == "circling":
        x = obj.x + np.cos(2.0 * math.pi * u + obj.phase)
        z = obj.z + np.sin(2.0 * math.pi * u + obj.phase)
    return np.stack([x, y, z], axis=1)


def camera_track(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    """Yaw (radians, positive turns right) and focal length (pixels) per frame."""
    u = np.arange(spec.frames, dtype=np.float64) / max(spec.frames - 1, 1)
    pan = math.radians(PAN_DEG)
    yaw = np.zeros(spec.frames)
    zoom = np.ones(spec.frames)
    if spec.camera == "pan_left":
        yaw = pan * (1.0 - 2.0 * u)
    elif spec.camera == "pan_right":
        yaw = pan * (2.0 * u - 1.0)
    elif spec.camera == "zoom_in":
        zoom = 1.0 + (ZOOM - 1.0) * u
    elif spec.camera == "zoom_out":
        zoom = ZOOM - (ZOOM - 1.0) * u
    focal = 0.5 * spec.width / math.tan(math.radians(HFOV_DEG) / 2.0) * zoom
    return yaw, focal


def camera_rays(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ray directions (dx, dy, dz), each (T,H,W), scaled so ray parameter = depth."""
    yaw, focal = camera_track(spec)
    pitch = math.radians(PITCH_DEG)
    sp, cp = math.sin(pitch), math.cos(pitch)
    sy, cy = np.sin(yaw)[:, None, None], np.cos(yaw)[:, None, None]
    f = focal[:, None, None].astype(np.float32)
    sy, cy = sy.astype(np.float32), cy.astype(np.float32)
    xc = (np.arange(spec.width, dtype=np.float32) + 0.5 - spec.width / 2.0)[None, None, :] / f
    yc = -(np.arange(spec.height, dtype=np.float32) + 0.5 - spec.height / 2.0)[None, :, None] / f
    # d = xc * right + yc * up + forward, for the camera turned by yaw and pitched down.
    dx = xc * cy + yc * (sy * sp) + sy * cp
    dy = np.broadcast_to(yc * cp - sp, dx.shape)
    dz = -xc * sy + yc * (cy * sp) + cy * cp
    f32 = np.float32
    return dx.astype(f32, copy=False), dy.astype(f32, copy=False), dz.astype(f32, copy=False)


def _sphere(
    d: tuple[np.ndarray, ...], oc: tuple[np.ndarray, ...], r: float
) -> tuple[np.ndarray, np.ndarray]:
    """First hit of a sphere (inf on a miss); a sphere has one part."""
    dx, dy, dz = d
    ox, oy, oz = oc
    a = dx * dx + dy * dy + dz * dz
    b = 2.0 * (dx * ox + dy * oy + dz * oz)
    c = ox * ox + oy * oy + oz * oz - r * r
    disc = b * b - 4.0 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
    return np.where((disc > 0) & (t > 0), t, np.inf), np.zeros_like(t, dtype=np.int8)


def _box(
    d: tuple[np.ndarray, ...], oc: tuple[np.ndarray, ...], r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: first hit (inf on a miss) and the axis (0 x, 1 y, 2 z) of the face entered."""
    lows, highs = [], []
    for di, oi in zip(d, oc, strict=True):
        inv = 1.0 / np.where(np.abs(di) < 1e-9, 1e-9, di)
        t1, t2 = (-r - oi) * inv, (r - oi) * inv
        lows.append(np.minimum(t1, t2))
        highs.append(np.maximum(t1, t2))
    low = np.stack(np.broadcast_arrays(*lows))
    near = low.max(axis=0)
    far = np.minimum(np.minimum(highs[0], highs[1]), highs[2])
    axis = low.argmax(axis=0).astype(np.int8)
    return np.where((near < far) & (near > 0), near, np.inf), axis


def _cylinder(
    d: tuple[np.ndarray, ...], oc: tuple[np.ndarray, ...], r: float
) -> tuple[np.ndarray, np.ndarray]:
    """First hit of a vertical cylinder of height 2r; part 0 side, 1 top cap, 2 bottom cap."""
    dx, dy, dz = d
    ox, oy, oz = oc
    a = np.maximum(dx * dx + dz * dz, 1e-12)
    b = 2.0 * (dx * ox + dz * oz)
    c = ox * ox + oz * oz - r * r
    disc = b * b - 4.0 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
    y = oy + t * dy
    side = np.where((disc > 0) & (t > 0) & (np.abs(y) <= r), t, np.inf)
    best, part = side, np.zeros(side.shape, dtype=np.int8)
    safe_dy = np.where(np.abs(dy) < 1e-9, 1e-9, dy)
    for cap, level in ((1, r), (2, -r)):
        tc = (level - oy) / safe_dy
        px, pz = ox + tc * dx, oz + tc * dz
        ok = (tc > 0) & (px * px + pz * pz <= r * r) & (tc < best)
        best = np.where(ok, tc, best)
        part = np.where(ok, np.int8(cap), part)
    return best, part


def _cone(
    d: tuple[np.ndarray, ...], oc: tuple[np.ndarray, ...], r: float
) -> tuple[np.ndarray, np.ndarray]:
    """First hit of an upright cone (base radius r, height 2r); part 0 mantle, 2 base."""
    dx, dy, dz = d
    ox, oy, oz = oc
    k2 = 0.25  # (base radius / height)^2 for a cone of radius r and height 2r
    y0 = r - oy  # apex height above the ray origin, in object-centred coordinates
    a = dx * dx + dz * dz - k2 * dy * dy
    a = np.where(np.abs(a) < 1e-12, 1e-12, a)
    b = 2.0 * (dx * ox + dz * oz + k2 * y0 * dy)
    c = ox * ox + oz * oz - k2 * y0 * y0
    disc = b * b - 4.0 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    best = np.full(np.broadcast_shapes(dx.shape, np.shape(ox)), np.inf, dtype=np.float32)
    for t in ((-b - root) / (2.0 * a), (-b + root) / (2.0 * a)):
        y = oy + t * dy
        ok = (disc > 0) & (t > 0) & (y >= -r) & (y <= r) & (t < best)
        best = np.where(ok, t, best)
    part = np.zeros(best.shape, dtype=np.int8)
    tc = (-r - oy) / np.where(np.abs(dy) < 1e-9, 1e-9, dy)
    px, pz = ox + tc * dx, oz + tc * dz
    ok = (tc > 0) & (px * px + pz * pz <= r * r) & (tc < best)
    return np.where(ok, tc, best), np.where(ok, np.int8(2), part)


_INTERSECT = {"sphere": _sphere, "cube": _box, "cylinder": _cylinder, "cone": _cone}


def _normals(
    shape: str, q: tuple[np.ndarray, ...], part: np.ndarray, d: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """Unit surface normals at object-centred hit points q (only meaningful where hit)."""
    qx, qy, qz = q
    if shape == "sphere":
        nx, ny, nz = qx, qy, qz
    elif shape == "cube":
        sel = [(part == i).astype(np.float32) for i in range(3)]
        nx, ny, nz = (-np.sign(di) * s for di, s in zip(d, sel, strict=True))
    elif shape == "cylinder":
        side = part == 0
        nx = np.where(side, qx, 0.0)
        nz = np.where(side, qz, 0.0)
        ny = np.where(part == 1, 1.0, np.where(part == 2, -1.0, 0.0))
    else:
        rr = np.sqrt(qx * qx + qz * qz) + 1e-9
        base = part == 2
        nx = np.where(base, 0.0, qx / rr)
        nz = np.where(base, 0.0, qz / rr)
        ny = np.where(base, -1.0, 0.5)
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-9
    return nx / norm, ny / norm, nz / norm


def _pattern(texture: str, q: tuple[np.ndarray, ...], size: float) -> np.ndarray:
    """1 where the texture shows its second colour, in object-local coordinates."""
    qx, qy, qz = (c / size for c in q)
    if texture == "striped":
        return (np.mod(qy * 2.5 + 10.0, 1.0) < 0.4).astype(np.float32)
    if texture == "checkered":
        # Offsets keep cell edges off the faces of cubes, where rounding would speckle.
        cells = np.floor(qx * 2.0 + 0.5) + np.floor(qy * 2.0 + 0.5) + np.floor(qz * 2.0 + 0.5)
        return (np.mod(cells, 2.0) == 1.0).astype(np.float32)
    if texture == "dotted":
        fx, fy, fz = (g * 2.0 - np.round(g * 2.0) for g in (qx, qy, qz))
        return (fx * fx + fy * fy + fz * fz < 0.06).astype(np.float32)
    return np.zeros(np.shape(qx), dtype=np.float32)


def _rgb01(name: str) -> np.ndarray:
    return np.asarray(COLOURS[name], dtype=np.float32) / 255.0


def _camera_basis(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and forward unit vectors per frame, (T, 3) each."""
    pitch = math.radians(PITCH_DEG)
    sp, cp = math.sin(pitch), math.cos(pitch)
    sy, cy, zero = np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)
    right = np.stack([cy, zero, -sy], axis=1)
    up = np.stack([sy * sp, np.full_like(yaw, cp), cy * sp], axis=1)
    forward = np.stack([sy * cp, np.full_like(yaw, -sp), cy * cp], axis=1)
    return right, up, forward


def _screen_window(
    spec: SceneSpec, centres: np.ndarray, radius: float
) -> tuple[slice, slice] | None:
    """Rows and columns that can see a ball of `radius` around `centres` in any frame.

    Casting rays only there keeps the cost per object proportional to its size on screen.
    None when the ball is out of view in every frame.
    """
    yaw, focal = camera_track(spec)
    right, up, forward = _camera_basis(yaw)
    rel = centres - np.array([0.0, CAMERA_HEIGHT, 0.0])
    xc, yc, zc = ((rel * axis).sum(axis=1) for axis in (right, up, forward))
    if np.any(zc - radius < 0.05):
        return slice(0, spec.height), slice(0, spec.width)
    depths = (zc - radius, zc + radius)
    xs = np.stack([(xc + sx) / z for sx in (-radius, radius) for z in depths])
    ys = np.stack([(yc + sy) / z for sy in (-radius, radius) for z in depths])
    col_lo = np.floor(spec.width / 2.0 + focal * xs.min(axis=0) - 1.5).min()
    col_hi = np.ceil(spec.width / 2.0 + focal * xs.max(axis=0) + 1.5).max()
    row_lo = np.floor(spec.height / 2.0 - focal * ys.max(axis=0) - 1.5).min()
    row_hi = np.ceil(spec.height / 2.0 - focal * ys.min(axis=0) + 1.5).max()
    c0, c1 = int(max(col_lo, 0)), int(min(col_hi, spec.width))
    r0, r1 = int(max(row_lo, 0)), int(min(row_hi, spec.height))
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def render(spec: SceneSpec) -> RenderedClip:
    """Ray-cast every pixel of every frame of `spec`: RGB, exact depth, masks and caption."""
    T, H, W = spec.frames, spec.height, spec.width
    d = camera_rays(spec)
    dx, dy, dz = d
    ground_rgb, sky_rgb = (np.asarray(c, np.float32) / 255.0 for c in BACKGROUNDS[spec.background])

    t_ground = np.where(dy < -1e-6, CAMERA_HEIGHT / np.maximum(-dy, 1e-6), np.inf)
    is_ground = t_ground < FAR
    depth = np.where(is_ground, t_ground, FAR).astype(np.float32)

    # Sky: a vertical gradient, lighter at the horizon.
    elev = dy / np.sqrt(dx * dx + dy * dy + dz * dz)
    s = np.clip(elev / 0.45, 0.0, 1.0)[..., None]
    horizon = 0.55 * sky_rgb + 0.45
    sky = horizon + (sky_rgb - horizon) * s

    # Ground: 1 m tiles with faint contrast that fades with distance, plus soft object shadows.
    tg = np.where(is_ground, t_ground, 0.0).astype(np.float32)
    gx, gz = dx * tg, dz * tg
    odd = ((np.floor(gx) + np.floor(gz)).astype(np.int32) & 1).astype(np.float32)
    shade = 1.0 + 0.05 * (2.0 * odd - 1.0) * np.exp(-tg / 18.0)
    tracks = [object_track(o, T) for o in spec.objects]
    for obj, track in zip(spec.objects, tracks, strict=True):
        reach = 2.6 * obj.size
        window = _screen_window(spec, track * np.array([1.0, 0.0, 1.0]), reach * math.sqrt(2))
        if window is None:
            continue
        win = (slice(None), *window)
        cx, cy, cz = (track[:, i, None, None].astype(np.float32) for i in range(3))
        dist2 = (gx[win] - cx) ** 2 + (gz[win] - cz) ** 2
        strength = 0.45 * np.exp(-(cy - obj.size) / 0.8)
        blob = strength * np.exp(-dist2 / (1.3 * obj.size * obj.size))
        shade[win] *= np.where(dist2 < reach * reach, 1.0 - blob, 1.0)
    ground = ground_rgb * shade[..., None]
    rgb = np.where(is_ground[..., None], ground, sky).astype(np.float32)

    masks = np.zeros((T, H, W), dtype=np.uint8)
    origin = np.array([0.0, CAMERA_HEIGHT, 0.0])
    for index, (obj, track) in enumerate(zip(spec.objects, tracks, strict=True)):
        window = _screen_window(spec, track, obj.size * math.sqrt(3.0) * 1.01)
        if window is None:
            continue
        win = (slice(None), *window)
        dw = tuple(c[win] for c in d)
        oc = tuple((origin[i] - track[:, i]).astype(np.float32)[:, None, None] for i in range(3))
        t, part = _INTERSECT[obj.shape](dw, oc, obj.size)
        hit = t < depth[win]
        if not hit.any():
            continue
        th = np.where(hit, t, 0.0)
        q = tuple(o + th * di for o, di in zip(oc, dw, strict=True))
        n = _normals(obj.shape, q, part, dw)
        lambert = np.maximum(n[0] * _LIGHT[0] + n[1] * _LIGHT[1] + n[2] * _LIGHT[2], 0.0)
        light = _AMBIENT + (1.0 - _AMBIENT) * lambert
        mix = _pattern(obj.texture, q, obj.size)[..., None]
        albedo = _rgb01(obj.colour) * (1.0 - mix) + _rgb01(obj.second_colour) * mix
        rgb[win] = np.where(hit[..., None], albedo * light[..., None], rgb[win])
        depth[win] = np.where(hit, t, depth[win])
        masks[win][hit] = index + 1

    rgb8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return RenderedClip(
        spec=spec,
        rgb=np.ascontiguousarray(np.broadcast_to(rgb8, (T, H, W, 3))),
        depth=np.ascontiguousarray(np.broadcast_to(depth, (T, H, W)), dtype=np.float32),
        masks=masks,
        caption=make_caption(spec),
    )


def describe(spec: SceneSpec) -> grammar.Described:
    """The canonical facts a caption of `spec` states."""
    main = spec.objects[0]
    return grammar.Described(
        shape=main.shape,
        colour=main.colour,
        texture=main.texture,
        motion=main.motion,
        background=spec.background,
        camera=spec.camera,
        side=sideways_direction(main) if main.motion == "sideways" else 0,
        others=tuple((o.colour, o.shape, o.size < main.size) for o in spec.objects[1:]),
    )


def attributes(spec: SceneSpec) -> dict[str, str]:
    """The main object's and the scene's canonical attributes, as a caption states them."""
    main = spec.objects[0]
    return {
        "shape": main.shape,
        "colour": main.colour,
        "texture": main.texture,
        "motion": main.motion,
        "background": spec.background,
        "camera": spec.camera,
    }


def make_caption(spec: SceneSpec, variant: int = 0) -> str:
    """A caption of `spec`; different variants word the same facts differently."""
    return grammar.caption(describe(spec), spec.seed, variant)


def attributes_from_caption(text: str) -> dict[str, str]:
    """Canonical attribute words (shape, colour, texture, motion, background, camera) in `text`."""
    return grammar.attributes_from_caption(text)


def generate(n: int, seed: int = 0, **kw: Any) -> Iterator[RenderedClip]:
    """Render `n` clips from seeds seed, seed+1, ...; `kw` goes to `sample_scene`."""
    for i in range(n):
        yield render(sample_scene(seed + i, **kw))
