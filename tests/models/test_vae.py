"""The per-frame AutoencoderKL: shapes, value ranges, and a save/load round trip."""

from __future__ import annotations

import torch

from story.models.vae import (
    build_vae,
    decode_video,
    downsample_factor,
    encode_video,
    frames_to_vae_input,
    load_vae,
    tiny_vae_config,
    vae_output_to_frames,
)


def _tiny():
    torch.manual_seed(0)
    config = tiny_vae_config((8, 16, 16), sample_size=16)
    config["norm_num_groups"] = 8
    return build_vae(config).eval()


def test_video_round_trip_shapes_and_factor() -> None:
    vae = _tiny()
    assert downsample_factor(vae) == 4
    video = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = encode_video(vae, video, 0.5, sample=False)
        out = decode_video(vae, z, 0.5)
    assert z.shape == (2, 4, 3, 4, 4)
    assert out.shape == video.shape


def test_frames_conversion_is_lossless_for_uint8() -> None:
    frames = torch.randint(0, 256, (3, 5, 7, 3), dtype=torch.uint8)
    x = frames_to_vae_input(frames)
    assert x.shape == (3, 3, 5, 7) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(vae_output_to_frames(x), frames)


def test_save_and_load_gives_identical_latents(tmp_path) -> None:
    vae = _tiny()
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_vae(tmp_path / "vae").eval()
    video = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        a = encode_video(vae, video, 1.0, sample=False)
        b = encode_video(loaded, video, 1.0, sample=False)
    assert torch.equal(a, b)


def test_missing_folder_is_named(tmp_path) -> None:
    import pytest

    with pytest.raises(FileNotFoundError, match="not an AutoencoderKL folder"):
        load_vae(tmp_path / "nothing")
