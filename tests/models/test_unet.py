"""Structure features are added inside the U-Net down path, scaled, and only while set."""

from __future__ import annotations

import copy

import torch

from story.models.t2v import random_tiny


def _inputs(model):
    torch.manual_seed(1)
    latents = torch.randn(1, *model.latent_shape)
    structure = torch.rand(1, 1, model.config.frames, model.config.height, model.config.width)
    text = torch.randn(1, 5, model.unet.config.cross_attention_dim)
    return latents, torch.tensor([500]), text, structure * 2 - 1


def _trained_encoder(model) -> None:
    for projection in model.structure_encoder.projections:
        torch.nn.init.normal_(projection.weight, std=0.5)


def test_structure_changes_output_only_with_nonzero_strength() -> None:
    model = random_tiny(text_dim=16).eval()
    _trained_encoder(model)
    latents, t, text, structure = _inputs(model)
    with torch.no_grad():
        features = model.encode_structure(structure)
        plain = model.predict(latents, t, text, None)
        zero = model.predict(latents, t, text, features, strength=0.0)
        guided = model.predict(latents, t, text, features, strength=1.0)
        double = model.predict(latents, t, text, features, strength=2.0)
        after = model.predict(latents, t, text, None)
    assert torch.equal(plain, zero)
    assert torch.equal(plain, after)
    assert (guided - plain).abs().mean() > 1e-3
    assert (double - guided).abs().mean() > 1e-3


def test_every_down_level_receives_its_feature() -> None:
    model = random_tiny(text_dim=16).eval()
    latents, t, text, structure = _inputs(model)
    with torch.no_grad():
        features = [torch.zeros_like(f) for f in model.encode_structure(structure)]
        base = model.predict(latents, t, text, None)
        for level in range(len(features)):
            bumped = [f.clone() for f in features]
            bumped[level] += 1.0
            assert not torch.equal(model.predict(latents, t, text, bumped), base)


def test_a_deep_copy_keeps_its_own_structure_path() -> None:
    model = random_tiny(text_dim=16).eval()
    _trained_encoder(model)
    twin = copy.deepcopy(model)
    latents, t, text, structure = _inputs(model)
    with torch.no_grad():
        a = model.predict(latents, t, text, model.encode_structure(structure))
        b = twin.predict(latents, t, text, twin.encode_structure(structure))
        c = twin.predict(latents, t, text, None)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
