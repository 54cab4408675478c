"""Motion read from frames: the camera fit sees pans and zooms, the classifier file round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from story.tasks.library.motion import (
    CAMERA_LABELS,
    MOTION_LABELS,
    MotionClassifier,
    MotionError,
    camera_fit,
    camera_fits,
    clip_motion,
    load_motion_classifier,
    motion_descriptor,
)
from story.tasks.settings import Settings
from story.tasks.world import miniworld

CAMERA_MEAN = slice(0, 4)  # tx, ty, scale, rotation averaged over the clip


def world(camera: str, motion: str = "static") -> np.ndarray:
    spec = miniworld.sample_scene(7, camera=camera, motion=motion, n_objects=1)
    return miniworld.render(spec).rgb


def test_pans_and_zooms_have_opposite_signs() -> None:
    tx_left = motion_descriptor(world("pan_left"))[CAMERA_MEAN][0]
    tx_right = motion_descriptor(world("pan_right"))[CAMERA_MEAN][0]
    assert tx_left * tx_right < 0
    zoom_in = motion_descriptor(world("zoom_in"))[CAMERA_MEAN][2]
    zoom_out = motion_descriptor(world("zoom_out"))[CAMERA_MEAN][2]
    assert zoom_in > 0 > zoom_out


def test_descriptor_of_any_frame_size_and_bad_input() -> None:
    wide = np.random.default_rng(0).integers(0, 255, (5, 90, 160, 3), dtype=np.uint8)
    still = np.repeat(world("static")[:1], 4, axis=0)
    assert motion_descriptor(wide).shape == motion_descriptor(still).shape
    with pytest.raises(MotionError, match="at least 2 frames"):
        motion_descriptor(still[:1])
    with pytest.raises(MotionError, match="uint8"):
        motion_descriptor(still.astype(np.float32))


def test_camera_fit_recovers_pan_zoom_and_roll_despite_a_moving_object() -> None:
    h, w = 36, 64
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / w
    truths = np.array([[0.02, -0.01, 0.05, 0.0], [-0.03, 0.0, -0.04, 0.02], [0, 0, 0, 0]])
    flows = []
    for tx, ty, scale, rot in truths:
        u, v = tx + scale * x - rot * y, ty + scale * y + rot * x
        flow = np.stack([u, v], 2) * w
        flow[10:18, 20:30] += (6.0, -4.0)  # an object moving against the camera
        flows.append(flow)
    params, residual = camera_fits(np.stack(flows).astype(np.float32))
    np.testing.assert_allclose(params, truths, atol=2e-3)
    # What the camera does not explain is the object, and only the object.
    assert np.abs(residual[:, 10:18, 20:30] * w - (6.0, -4.0)).max() < 0.5
    outside = residual.copy()
    outside[:, 10:18, 20:30] = 0
    assert np.abs(outside * w).max() < 0.1
    one, one_residual = camera_fit(flows[1])
    np.testing.assert_allclose(one, params[1], atol=1e-6)
    np.testing.assert_allclose(one_residual, residual[1], atol=1e-6)


def _classifier(dim: int, hidden: int) -> MotionClassifier:
    rng = np.random.default_rng(0)
    width = hidden or dim
    return MotionClassifier(
        mean=rng.normal(size=dim).astype(np.float32),
        scale=np.ones(dim, np.float32),
        hidden_weights=rng.normal(size=(dim, hidden)).astype(np.float32),
        hidden_bias=np.zeros(hidden, np.float32),
        motion_weights=rng.normal(size=(width, len(MOTION_LABELS))).astype(np.float32),
        motion_bias=np.zeros(len(MOTION_LABELS), np.float32),
        camera_weights=rng.normal(size=(width, len(CAMERA_LABELS))).astype(np.float32),
        camera_bias=np.zeros(len(CAMERA_LABELS), np.float32),
        notes={"what": "test"},
    )


@pytest.mark.parametrize("hidden", [0, 8])
def test_classifier_round_trips_and_fills_the_row(tmp_path: Path, hidden: int) -> None:
    frames = world("pan_left", "towards")
    dim = len(motion_descriptor(frames))
    model = _classifier(dim, hidden)
    model.save(tmp_path / "c.json")
    loaded = MotionClassifier.load(tmp_path / "c.json")
    row = clip_motion(frames, loaded)
    assert row["motion_label"] in MOTION_LABELS and row["camera_label"] in CAMERA_LABELS
    assert sum(row["motion_probs"]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(row["camera_probs"], model.predict(motion_descriptor(frames))[1])
    assert "motion_probs" not in clip_motion(frames, None)


def test_classifier_files_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"motion_labels": ["up"], "camera_labels": []}))
    with pytest.raises(MotionError, match="labels differ"):
        MotionClassifier.load(bad)
    with pytest.raises(MotionError, match="not found"):
        MotionClassifier.load(tmp_path / "none.json")
    assert load_motion_classifier(Settings(motion_model="none")) is None
    assert load_motion_classifier(Settings(checkpoints=tmp_path)) is None


def test_bundled_classifier_reads_validation_clips() -> None:
    from story.tasks.training.video_text_data import labels_of
    from story.tasks.world import splits

    classifier = load_motion_classifier(Settings())
    assert classifier is not None, "checkpoints/motion-tiny/classifier.json is missing"
    seeds = splits.seeds(splits.VALIDATION, "library", 16, start=60_000)
    motion_right = camera_right = 0
    for seed in seeds:
        spec = miniworld.sample_scene(seed)
        row = clip_motion(miniworld.render(spec).rgb, classifier)
        truth = labels_of(miniworld.describe(spec))
        motion_right += row["motion_label"] == truth["motion"]
        camera_right += row["camera_label"] == truth["camera"]
    assert motion_right >= 13 and camera_right >= 15, (motion_right, camera_right)
