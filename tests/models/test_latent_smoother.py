"""The latent smoother: the identity until trained, carried in the checkpoint folder, in the
model's identity, and applied to every decode."""

from __future__ import annotations

import json

import pytest
import torch

from story.models.latent_smoother import LatentSmoother, SmootherConfig
from story.models.t2v import StructureT2V, checkpoint_id, random_tiny


def _trained(channels: int = 4) -> LatentSmoother:
    smoother = LatentSmoother(SmootherConfig(channels=channels, hidden=8))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in smoother.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return smoother


def test_a_new_smoother_changes_nothing_and_a_single_frame_passes_through() -> None:
    z = torch.randn(2, 4, 5, 6, 6)
    assert torch.equal(LatentSmoother(SmootherConfig(hidden=8))(z), z)
    image = torch.randn(1, 4, 1, 6, 6)
    assert torch.equal(_trained()(image), image)
    with pytest.raises(ValueError, match="odd temporal kernel"):
        LatentSmoother(SmootherConfig(kernel_time=2))


def test_the_checkpoint_carries_it_and_names_it(tmp_path) -> None:
    model = random_tiny(text_dim=16).eval()
    plain = model.save_pretrained(tmp_path / "plain")
    latents = torch.randn(1, *model.latent_shape)
    with torch.no_grad():
        before = model.decode_latents(latents)
        model.latent_smoother = _trained(model.vae.config.latent_channels)
        smoothed = model.decode_latents(latents)
    assert not torch.allclose(before, smoothed)

    folder = model.save_pretrained(tmp_path / "smooth")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["latent_smoother"] == ["story.models.latent_smoother", "LatentSmoother"]
    assert checkpoint_id(folder).split("@")[1] != checkpoint_id(plain).split("@")[1]
    loaded = StructureT2V.from_pretrained(folder, device="cpu")
    with torch.no_grad():
        assert torch.allclose(loaded.decode_latents(latents), smoothed, atol=1e-5)
    assert StructureT2V.from_pretrained(plain, device="cpu").latent_smoother is None
    model.latent_smoother = None  # saved again over the same folder: no stale smoother left
    model.save_pretrained(folder)
    assert StructureT2V.from_pretrained(folder, device="cpu").latent_smoother is None

    model.latent_smoother = _trained(model.vae.config.latent_channels)
    model.save_pretrained(folder)
    (folder / "latent_smoother" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"latent_smoother/config.json"):
        StructureT2V.from_pretrained(folder, device="cpu")
