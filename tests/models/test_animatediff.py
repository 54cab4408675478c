"""The AnimateDiff + depth ControlNet backend, on tiny random models saved to local folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel

from story.models.animatediff import AnimateDiffDepth
from story.models.t2v import T2VConfig, default_scheduler
from story.tasks.render.synthesize import synthesize
from tests.models.t2v_stubs import HashTextEncoder

DIM = 16
CONFIG = T2VConfig(frames=2, height=16, width=16, max_text_length=8, prediction_type="epsilon")


def _components(root):
    """Tiny SD-style U-Net + VAE, a motion adapter and a depth ControlNet, saved as folders."""
    torch.manual_seed(0)
    blocks = dict(
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=DIM,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        **blocks,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    adapter = MotionAdapter(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
    )
    controlnet = ControlNetModel(
        in_channels=4, conditioning_embedding_out_channels=(8, 16), **blocks
    )
    for projection in controlnet.controlnet_down_blocks:
        torch.nn.init.normal_(projection.weight, std=0.3)
    unet.save_pretrained(root / "sd" / "unet")
    vae.save_pretrained(root / "sd" / "vae")
    adapter.save_pretrained(root / "adapter")
    controlnet.save_pretrained(root / "controlnet")
    default_scheduler("epsilon").save_pretrained(root / "sd" / "scheduler")


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> AnimateDiffDepth:
    root = tmp_path_factory.mktemp("animatediff")
    _components(root)
    model = AnimateDiffDepth.from_components(
        root / "sd", root / "adapter", root / "controlnet", CONFIG, device="cpu"
    )
    model.set_text_encoder(HashTextEncoder(DIM))
    return model


def test_renders_frames_and_depth_changes_them(backend) -> None:
    guide = np.linspace(-1, 1, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    kw = dict(seed=3, steps=2, guidance=2.0)
    guided = synthesize(backend, "a red ball", guide, **kw)
    again = synthesize(backend, "a red ball", guide, **kw)
    text_only = synthesize(backend, "a red ball", None, frames=2, **kw)
    assert guided.shape == (2, 16, 16, 3) and guided.dtype == np.uint8
    assert np.array_equal(guided, again)
    assert not np.array_equal(guided, text_only)
    assert np.array_equal(text_only, synthesize(backend, "a red ball", guide, tau=1000, **kw))


def test_save_and_load_folder_round_trip(backend, tmp_path) -> None:
    backend.save_pretrained(tmp_path / "ad")
    loaded = AnimateDiffDepth.from_pretrained(tmp_path / "ad", device="cpu")
    loaded.set_text_encoder(backend.text_encoder())
    guide = np.zeros((2, 16, 16), np.float32)
    kw = dict(seed=1, steps=2, guidance=1.0)
    assert np.array_equal(
        synthesize(backend, "a cube", guide, **kw), synthesize(loaded, "a cube", guide, **kw)
    )


def test_missing_folders_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="backend.json"):
        AnimateDiffDepth.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        AnimateDiffDepth.from_components(tmp_path, tmp_path, tmp_path, CONFIG)
