"""The latent smoother: the identity until trained, carried in the checkpoint folder, in the
model's identity, and applied to every decode."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

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


def _moving_square(frames: int, size: int, step: int) -> torch.Tensor:
    """(1, 1, frames, size, size) in [-1, 1]: a near square sliding right by `step` pixels a frame
    over a far ground."""
    clip = -torch.ones(1, 1, frames, size, size)
    for t in range(frames):
        left = 4 + step * t
        clip[0, 0, t, 10:22, left : left + 12] = 1.0
    return clip


def test_a_guided_smoother_reads_the_neighbours_where_the_structure_moved_them() -> None:
    frames, size, factor = 5, 48, 4
    structure = _moving_square(frames, size, step=factor)  # one latent cell a frame
    latents = F.avg_pool3d(structure, (1, factor, factor)).expand(1, 4, -1, -1, -1).contiguous()
    previous, following, depth = LatentSmoother.guide_inputs(latents, structure)
    assert previous.shape == following.shape == latents.shape
    assert depth.shape == (1, 1, frames, 12, 12)
    # Carried along the flow, the neighbours line up with the frame; as they are, they do not.
    inner = (slice(None), slice(None), slice(1, -1))
    carried = (previous - latents)[inner].abs().mean() + (following - latents)[inner].abs().mean()
    raw = (latents[:, :, :-2] - latents[:, :, 1:-1]).abs().mean() * 2
    assert carried < 0.1 * raw
    # Without a structure (text only) the neighbours come as they are and the depth is zero.
    previous, following, depth = LatentSmoother.guide_inputs(latents, None)
    assert torch.equal(previous[:, :, 1:], latents[:, :, :-1])
    assert torch.equal(following[:, :, :-1], latents[:, :, 1:])
    assert not depth.any()


def test_a_guided_smoother_is_the_identity_until_trained_and_round_trips(tmp_path) -> None:
    structure = _moving_square(4, 32, step=2)
    z = torch.randn(1, 4, 4, 8, 8)
    guided = LatentSmoother(SmootherConfig(hidden=8, guided=True))
    assert torch.equal(guided(z, structure), z) and torch.equal(guided(z), z)
    with torch.no_grad():
        for p in guided.parameters():
            p.add_(0.05 * torch.randn_like(p))
        with_guide, without = guided(z, structure), guided(z)
    assert not torch.allclose(with_guide, without)  # it reads the structure
    loaded = LatentSmoother.from_pretrained(guided.save_pretrained(tmp_path / "s"))
    assert loaded.config.guided
    with torch.no_grad():
        assert torch.allclose(loaded(z, structure), with_guide, atol=1e-6)
    with pytest.raises(ValueError, match="does not match the latents"):
        guided(z, structure[:, :, :3])
