"""Depth estimators: DPT loading on tiny random checkpoints, the tiny net, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from story.models.depth import (
    DPTDepthEstimator,
    TinyDepthConfig,
    TinyDepthEstimator,
    TinyDepthNet,
    load_depth_estimator,
    resolve_depth_model_id,
)
from story.models.structure_norm import normalize_structure
from story.tasks.settings import REPO_ROOT

CHECKPOINTS = REPO_ROOT / "checkpoints"


def save_tiny_dpt(folder: Path, hybrid: bool) -> torch.nn.Module:
    """A random few-layer DPT (ViT or BiT-hybrid) and its processor, in the hub folder format."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    common = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        use_auxiliary_head=False,
        initializer_range=0.5,  # wide enough that random outputs are not numerically flat
    )
    if hybrid:
        config = DPTConfig(
            is_hybrid=True,
            patch_size=16,
            backbone_featmap_shape=[1, 32, 2, 2],
            backbone_config=dict(
                model_type="bit",
                global_padding="same",
                layer_type="bottleneck",
                depths=[1, 1, 1],
                hidden_sizes=[8, 16, 32],
                embedding_size=8,
                num_groups=4,
                out_features=["stage1", "stage2", "stage3"],
                embedding_dynamic_padding=True,
            ),
            **common,
        )
    else:
        config = DPTConfig(patch_size=8, **common)
    torch.manual_seed(0)
    model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=1
    ).save_pretrained(folder)
    return model


def random_frames(t: int = 3, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hybrid", [False, True], ids=["dpt", "dpt-hybrid"])
def test_tiny_dpt_saved_and_loaded_gives_the_same_normalised_depth(tmp_path: Path, hybrid: bool):
    from transformers import DPTImageProcessor

    folder = tmp_path / "dpt"
    original = save_tiny_dpt(folder, hybrid)
    frames = random_frames()

    estimator = load_depth_estimator(folder, device="cpu")
    assert isinstance(estimator, DPTDepthEstimator)
    out = estimator.estimate(frames, size=(20, 24))

    assert out.shape == (3, 20, 24) and out.dtype == np.float32
    assert np.allclose(out.reshape(3, -1).min(1), -1, atol=1e-5)
    assert np.allclose(out.reshape(3, -1).max(1), 1, atol=1e-5)
    kind = "dpt-hybrid" if hybrid else "dpt"
    assert estimator.model_id.startswith(kind + "-")
    assert estimator.model_id == resolve_depth_model_id(folder)

    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        raw = original(pixel_values=pixels).predicted_depth
    expected = normalize_structure(
        F.interpolate(raw[:, None], size=(20, 24), mode="bilinear")[:, 0]
    )
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5)


def test_native_size_and_clip_normalisation(tmp_path: Path):
    save_tiny_dpt(tmp_path / "dpt", hybrid=False)
    estimator = load_depth_estimator(tmp_path / "dpt", device="cpu")
    frames = random_frames(t=4, h=30, w=50, seed=1)

    per_clip = estimator.estimate(frames, normalize="clip")
    per_frame = estimator.estimate(frames, normalize="frame")

    assert per_clip.shape == per_frame.shape == (4, 30, 50)
    assert per_clip.min() == pytest.approx(-1, abs=1e-5)
    assert per_clip.max() == pytest.approx(1, abs=1e-5)
    # a clip-normalised frame spans at most [-1, 1]; per frame, every frame spans all of it
    spans = per_clip.reshape(4, -1).max(1) - per_clip.reshape(4, -1).min(1)
    assert spans.min() < 2 - 1e-3
    assert np.allclose(per_frame.reshape(4, -1).max(1) - per_frame.reshape(4, -1).min(1), 2)


def test_checkpoint_hash_changes_the_model_id(tmp_path: Path):
    first = tmp_path / "a"
    TinyDepthNet(TinyDepthConfig(channels=(8, 8), groups=2)).save(first)
    torch.manual_seed(1)
    second = tmp_path / "b"
    TinyDepthNet(TinyDepthConfig(channels=(8, 8), groups=2)).save(second)
    assert resolve_depth_model_id(first) != resolve_depth_model_id(second)
    assert TinyDepthEstimator(first, device="cpu").model_id == resolve_depth_model_id(first)


def test_bad_input_is_refused_clearly(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_depth_estimator(tmp_path / "missing")
    net_dir = tmp_path / "net"
    TinyDepthNet(TinyDepthConfig(channels=(8, 8), groups=2)).save(net_dir)
    estimator = TinyDepthEstimator(net_dir, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        estimator.estimate(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        estimator.estimate(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="normalize"):
        estimator.estimate(np.zeros((1, 8, 8, 3), np.uint8), normalize="global")


def heldout_clips(count: int = 3, frames: int = 6) -> list:
    """Miniature-world clips from seeds the tiny net never trained on."""
    from story.tasks.training.train_depth import HELDOUT_SEED
    from story.tasks.world.miniworld import render, sample_scene

    return [render(sample_scene(HELDOUT_SEED + 500 + i, frames=frames)) for i in range(count)]


def test_bundled_tiny_net_beats_trivial_priors_on_heldout_frames():
    from story.tasks.evaluation.depth_eval import constant_prior, depth_metrics, vertical_prior

    estimator = load_depth_estimator("tiny", CHECKPOINTS, device="cpu")
    scores: dict[str, list[dict[str, float]]] = {"tiny": [], "vertical": [], "constant": []}
    for clip in heldout_clips():
        pred = estimator.estimate(clip.rgb)
        near_is_high = np.corrcoef(pred.ravel(), 1.0 / clip.depth.ravel())[0, 1]
        assert near_is_high > 0.5
        scores["tiny"].append(depth_metrics(pred, clip.depth))
        scores["vertical"].append(depth_metrics(vertical_prior(pred.shape), clip.depth))
        scores["constant"].append(depth_metrics(constant_prior(pred.shape), clip.depth))
    mean = {
        k: {m: np.mean([s[m] for s in v]) for m in ("absrel", "delta1")} for k, v in scores.items()
    }
    assert mean["tiny"]["absrel"] < mean["vertical"]["absrel"] < mean["constant"]["absrel"]
    assert mean["tiny"]["delta1"] > mean["vertical"]["delta1"]


def test_bundled_tiny_net_takes_any_frame_size():
    estimator = load_depth_estimator("tiny", CHECKPOINTS, device="cpu")
    frames = random_frames(t=2, h=90, w=160, seed=3)
    assert estimator.model_id.startswith("tiny-")
    assert estimator.estimate(frames).shape == (2, 90, 160)
    resized = estimator.estimate(frames, size=(32, 48), normalize="clip")
    assert resized.shape == (2, 32, 48)
    assert resized.min() == pytest.approx(-1, abs=1e-5) and resized.max() == pytest.approx(
        1, abs=1e-5
    )
