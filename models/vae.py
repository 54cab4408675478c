"""The latent space: a diffusers `AutoencoderKL` applied per frame, with a tiny preset for CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL


def tiny_vae_config(
    channels: tuple[int, ...] = (32, 64, 64), latent_channels: int = 4, sample_size: int = 32
) -> dict:
    """A small `AutoencoderKL` config; downsampling factor is 2 ** (len(channels) - 1)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": list(channels),
        "layers_per_block": 1,
        "latent_channels": latent_channels,
        "norm_num_groups": min(16, channels[0]),
        "sample_size": sample_size,
        "mid_block_add_attention": False,
    }


def build_vae(config: dict) -> AutoencoderKL:
    """A randomly initialised `AutoencoderKL` from a config dict."""
    return AutoencoderKL(**config)


def load_vae(folder: str | Path, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """Load an `AutoencoderKL` saved with `save_pretrained` from a local folder."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: no config.json, not an AutoencoderKL folder")
    return AutoencoderKL.from_pretrained(root, torch_dtype=dtype, local_files_only=True)


def downsample_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along one side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def frames_to_vae_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = frames.float().div(127.5).sub(1.0)
    return x.movedim(-1, -3)


def vae_output_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    x = x.clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)
    return x.movedim(-3, -1)


def encode_video(
    vae: AutoencoderKL,
    video: torch.Tensor,
    scaling: float,
    generator: torch.Generator | None = None,
    sample: bool = True,
) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> scaled latents (B, C, T, h, w), one frame at a time."""
    b, _, t, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
    dist = vae.encode(flat).latent_dist
    z = dist.sample(generator) if sample else dist.mode()
    z = z * scaling
    return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4)


def decode_video(vae: AutoencoderKL, latents: torch.Tensor, scaling: float) -> torch.Tensor:
    """Scaled latents (B, C, T, h, w) -> (B, 3, T, H, W) in [-1, 1]."""
    b, c, t, h, w = latents.shape
    flat = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w) / scaling
    x = vae.decode(flat).sample
    return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
