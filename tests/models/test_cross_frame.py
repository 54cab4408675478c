"""Cross-frame attention: off is the trained model exactly, on anchors each clip on its own first
frame, and the U-Net's processors come back after."""

from __future__ import annotations

import pytest
import torch

from story.models.cross_frame import cross_frame_attention, spatial_self_attention
from story.models.sampler import sample_latents
from story.models.t2v import StructureT2V, random_tiny
from tests.models.t2v_stubs import HashTextEncoder


@pytest.fixture(scope="module")
def model() -> StructureT2V:
    bundle = random_tiny(text_dim=16, frames=4).eval()
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


def _predict(model, latents, weight=None):
    t = torch.full((latents.shape[0],), 500)
    text = model.encode_prompts(["a red cube on the grass"] * latents.shape[0])
    if weight is None:
        return model.predict(latents, t, text)
    with cross_frame_attention(model.unet, latents.shape[2], weight):
        return model.predict(latents, t, text)


def _latents(model, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.latent_shape, generator=g)


@torch.no_grad()
def test_only_spatial_self_attention_changes(model) -> None:
    names = spatial_self_attention(model.unet)
    assert names and all(".attentions." in n and n.endswith("attn1.processor") for n in names)
    assert not any("temp_attentions" in n or "transformer_in" in n for n in names)


@torch.no_grad()
def test_weight_zero_is_the_trained_model_and_processors_come_back(model) -> None:
    x = _latents(model)
    before = {k: type(v) for k, v in model.unet.attn_processors.items()}
    plain = _predict(model, x)
    assert torch.equal(_predict(model, x, 0.0), plain)
    changed = _predict(model, x, 1.0)
    assert not torch.allclose(changed, plain, atol=1e-4)
    assert {k: type(v) for k, v in model.unet.attn_processors.items()} == before
    assert torch.equal(_predict(model, x), plain)


@torch.no_grad()
def test_a_still_clip_is_its_own_anchor(model) -> None:
    """When every frame is the same, the first frame's keys are each frame's own."""
    still = _latents(model)[:, :, :1].expand(-1, -1, model.config.frames, -1, -1).contiguous()
    for weight in (0.5, 1.0):
        assert torch.allclose(_predict(model, still, weight), _predict(model, still), atol=1e-5)


@torch.no_grad()
def test_each_clip_of_a_batch_anchors_on_its_own_first_frame(model) -> None:
    a, b = _latents(model, seed=1), _latents(model, seed=2)
    together = _predict(model, torch.cat([a, b]), 1.0)
    assert torch.allclose(together[1:], _predict(model, b, 1.0), atol=1e-5)
    assert torch.allclose(together[:1], _predict(model, a, 1.0), atol=1e-5)


@torch.no_grad()
def test_the_sampler_knob_renders_and_checks_its_range(model) -> None:
    text = model.encode_prompts(["a red cube on the grass"])
    null = model.encode_prompts([""])

    def run(weight):
        generator = torch.Generator().manual_seed(0)
        return sample_latents(
            model, text, null, steps=3, guidance=4.0, generator=generator, cross_frame=weight
        )

    assert torch.equal(
        run(0.0),
        sample_latents(
            model, text, null, steps=3, guidance=4.0, generator=torch.Generator().manual_seed(0)
        ),
    )
    assert not torch.allclose(run(1.0), run(0.0), atol=1e-4)
    with pytest.raises(ValueError, match="cross_frame"):
        run(1.5)
