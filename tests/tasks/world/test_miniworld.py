"""The miniature world: determinism, exact depth, masks, captions and scene specs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from story.tasks.world import miniworld as mw


def _ray(i: float, j: float, height: int, width: int) -> np.ndarray:
    """Ray through pixel (row i, col j) of a static camera, scaled so its camera-z is 1."""
    focal = 0.5 * width / math.tan(math.radians(mw.HFOV_DEG) / 2.0)
    pitch = math.radians(mw.PITCH_DEG)
    xc = (j + 0.5 - width / 2.0) / focal
    yc = -(i + 0.5 - height / 2.0) / focal
    return np.array(
        [xc, yc * math.cos(pitch) - math.sin(pitch), yc * math.sin(pitch) + math.cos(pitch)]
    )


def _resting_on_ray(shape: str, size: float, ray: np.ndarray) -> tuple[mw.ObjectSpec, float]:
    """A static object resting on the ground whose centre lies on `ray`, and that ray parameter."""
    s = (size - mw.CAMERA_HEIGHT) / ray[1]
    obj = mw.ObjectSpec(shape, "red", "plain", "static", size, s * ray[0], s * ray[2], 0.0)
    return obj, s


def _scene(*objects: mw.ObjectSpec, height: int = 64, width: int = 64) -> mw.SceneSpec:
    return mw.SceneSpec(1, tuple(objects), "grass", "static", 4, height, width)


def test_same_seed_same_clip_and_different_seeds_differ() -> None:
    a, b = mw.render(mw.sample_scene(7)), mw.render(mw.sample_scene(7))
    assert a.spec == b.spec and a.caption == b.caption
    for name in ("rgb", "depth", "masks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = mw.render(mw.sample_scene(8))
    assert c.spec != a.spec
    assert not np.array_equal(a.rgb, c.rgb)


def test_arrays_have_the_documented_shapes_and_types_at_any_size() -> None:
    clip = next(mw.generate(1, seed=3, frames=5, height=40, width=56))
    assert clip.rgb.shape == (5, 40, 56, 3) and clip.rgb.dtype == np.uint8
    assert clip.depth.shape == (5, 40, 56) and clip.depth.dtype == np.float32
    assert clip.masks.shape == (5, 40, 56) and clip.masks.dtype == np.uint8
    assert clip.masks.max() <= len(clip.spec.objects)


def test_ground_and_sky_depth_are_exact() -> None:
    far_away = mw.ObjectSpec("cube", "red", "plain", "static", 0.5, 500.0, 5.0, 0.0)
    clip = mw.render(_scene(far_away, height=48, width=48))
    assert clip.masks.max() == 0
    for i in range(48):
        ray = _ray(i, 10, 48, 48)
        expected = mw.CAMERA_HEIGHT / -ray[1] if ray[1] < 0 else math.inf
        expected = min(expected, mw.FAR)
        assert clip.depth[0, i, 10] == pytest.approx(expected, rel=1e-4)
    assert clip.depth[0, 0, 0] == mw.FAR
    assert clip.depth[0, -1, 0] < 3.0


@pytest.mark.parametrize("size", [0.3, 0.6])
def test_sphere_depth_is_its_nearest_point(size: float) -> None:
    ray = _ray(37, 20, 64, 64)
    obj, s = _resting_on_ray("sphere", size, ray)
    clip = mw.render(_scene(obj))
    expected = s - size / float(np.linalg.norm(ray))
    assert clip.depth[0, 37, 20] == pytest.approx(expected, rel=1e-4)
    assert clip.masks[0, 37, 20] == 1


def test_cube_front_face_depth_is_exact() -> None:
    ray = _ray(36, 32, 64, 64)
    obj, s = _resting_on_ray("cube", 0.5, ray)
    clip = mw.render(_scene(obj))
    # The ray enters the cube through its front face z = z_centre - size (it is steep enough
    # to miss the top face only if it reaches the front face below the top edge).
    t_front = (obj.z - obj.size) / ray[2]
    assert mw.CAMERA_HEIGHT + t_front * ray[1] < 2 * obj.size
    assert clip.depth[0, 36, 32] == pytest.approx(t_front, rel=1e-4)


def test_nearest_object_wins_the_mask_and_the_depth() -> None:
    ray = _ray(38, 30, 64, 64)
    far_obj, far_s = _resting_on_ray("sphere", 0.25, ray)
    near_obj, near_s = _resting_on_ray("cylinder", 0.6, ray)
    assert near_s < far_s
    clip = mw.render(_scene(far_obj, near_obj))
    assert clip.masks[0, 38, 30] == 2
    assert clip.depth[0, 38, 30] < far_s - 0.25


@pytest.mark.parametrize("seed", range(6))
def test_masks_agree_with_depth(seed: int) -> None:
    spec = mw.sample_scene(seed, n_objects=3)
    clip = mw.render(spec)
    empty = mw.render(
        mw.SceneSpec(
            spec.seed,
            (mw.ObjectSpec("cube", "red", "plain", "static", 0.1, 900.0, 5.0, 0.0),),
            spec.background,
            spec.camera,
        )
    )
    covered = clip.masks > 0
    assert covered.any()
    assert np.all(clip.depth[covered] < empty.depth[covered])
    np.testing.assert_array_equal(clip.depth[~covered], empty.depth[~covered])
    assert (clip.masks == 1).any(axis=(1, 2)).all()


def test_main_object_stays_in_view() -> None:
    for clip in mw.generate(40, seed=100):
        visible = (clip.masks == 1).any(axis=(1, 2))
        assert visible.mean() >= 0.75, clip.spec


def test_plain_main_object_shows_its_colour() -> None:
    names = list(mw.COLOURS)
    palette = np.array([mw.COLOURS[n] for n in names], dtype=float)
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    for seed, colour in enumerate(names):
        clip = mw.render(mw.sample_scene(seed, colour=colour, texture="plain", background="sand"))
        pixels = np.median(clip.rgb[clip.masks == 1].astype(float), axis=0)
        direction = pixels / np.linalg.norm(pixels)
        scores = palette @ direction
        if colour in ("white", "black"):
            assert (pixels.mean() > 90) == (colour == "white")
        else:
            assert names[int(np.argmax(scores))] == colour, (colour, pixels)


def test_camera_motion_shows_on_the_ground() -> None:
    obj = mw.ObjectSpec("cube", "red", "plain", "static", 0.1, 900.0, 5.0, 0.0)
    still = mw.render(mw.SceneSpec(0, (obj,), "grass", "static", 4))
    np.testing.assert_array_equal(still.rgb[0], still.rgb[-1])
    for camera in ("pan_left", "pan_right", "zoom_in", "zoom_out"):
        clip = mw.render(mw.SceneSpec(0, (obj,), "grass", camera, 4))
        assert np.abs(clip.rgb[0].astype(int) - clip.rgb[-1]).mean() > 1.0
    # Turning about the vertical axis leaves a flat ground's depth map as it is; zooming does not.
    zoom = mw.render(mw.SceneSpec(0, (obj,), "grass", "zoom_in", 4))
    assert not np.allclose(zoom.depth[0], zoom.depth[-1])


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("shape", mw.SHAPES),
        ("colour", tuple(mw.COLOURS)),
        ("texture", mw.TEXTURES),
        ("motion", mw.MOTIONS),
        ("background", tuple(mw.BACKGROUNDS)),
        ("camera", mw.CAMERAS),
    ],
)
def test_fixed_attributes_are_honoured(key: str, values: tuple[str, ...]) -> None:
    for seed, value in enumerate(values):
        spec = mw.sample_scene(seed, **{key: value})
        assert mw.attributes(spec)[key] == value
        assert mw.attributes_from_caption(mw.make_caption(spec))[key] == value


def test_sizes_and_object_counts_are_honoured() -> None:
    spec = mw.sample_scene(5, frames=9, height=32, width=48, n_objects=2)
    assert (spec.frames, spec.height, spec.width, len(spec.objects)) == (9, 32, 48, 2)


def test_spec_survives_a_json_round_trip() -> None:
    for seed in range(20):
        spec = mw.sample_scene(seed)
        again = mw.SceneSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec
        np.testing.assert_array_equal(mw.render(again).rgb, mw.render(spec).rgb)


def test_bad_specs_are_rejected_with_the_reason() -> None:
    with pytest.raises(mw.SceneError, match="hat"):
        mw.sample_scene(0, hat="top")
    with pytest.raises(mw.SceneError, match="torus"):
        mw.ObjectSpec("torus", "red", "plain", "static", 0.5, 0.0, 5.0, 0.0)
    with pytest.raises(mw.SceneError, match="background"):
        mw.sample_scene(0, background="moon")
    with pytest.raises(mw.SceneError, match="malformed"):
        mw.SceneSpec.from_dict({"seed": 1})


def test_caption_attributes_round_trip_for_many_seeds_and_variants() -> None:
    for seed in range(150):
        spec = mw.sample_scene(seed)
        for variant in range(6):
            text = mw.make_caption(spec, variant)
            assert mw.attributes_from_caption(text) == mw.attributes(spec), text


def test_paraphrases_differ() -> None:
    for seed in range(30):
        spec = mw.sample_scene(seed)
        captions = {mw.make_caption(spec, v) for v in range(6)}
        assert len(captions) == 6
        assert mw.render(spec).caption == mw.make_caption(spec, 0)


def test_free_form_prompts_are_parsed() -> None:
    found = mw.attributes_from_caption(
        "A crimson striped ball bouncing on the snow while the camera pans to the left"
    )
    assert found == {
        "shape": "sphere",
        "colour": "red",
        "texture": "striped",
        "motion": "bouncing",
        "background": "snow",
        "camera": "pan_left",
    }
    assert mw.attributes_from_caption("a box slides to the left, zoom out") == {
        "shape": "cube",
        "motion": "sideways",
        "camera": "zoom_out",
    }
    assert mw.attributes_from_caption("a colorful sunset over nothing") == {"background": "dusk"}
    assert mw.attributes_from_caption("a dark blue cube in a snowy field") == {
        "colour": "blue",
        "shape": "cube",
        "background": "snow",
    }
