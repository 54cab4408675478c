"""Pick the compute device: a GPU when one exists, the CPU otherwise."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve `auto` to cuda when available; honour an explicit choice."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but no CUDA device is available")
    return device


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def set_torch_threads(threads: int) -> None:
    """Pin torch's CPU threads for this worker (0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
