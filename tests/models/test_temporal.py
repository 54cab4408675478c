"""Temporal switch (Gen-1 joint image/video), structure detail levels and temporal guidance."""

from __future__ import annotations

import copy

import pytest
import torch

from story.models.sampler import sample_latents
from story.models.structure_encoder import StructureEncoder, blur_structure
from story.models.t2v import StructureT2V, random_tiny
from tests.models.t2v_stubs import HashTextEncoder


@pytest.fixture(scope="module")
def model() -> StructureT2V:
    bundle = random_tiny(text_dim=16, frames=3).eval()
    for module in bundle.unet.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.normal_(module.weight, std=0.2)
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


def _inputs(model: StructureT2V):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, *model.latent_shape, generator=g)
    text = model.encode_prompts(["a red cube"])
    return latents, torch.tensor([500]), text


@torch.no_grad()
def test_temporal_off_denoises_each_frame_on_its_own(model) -> None:
    latents, t, text = _inputs(model)
    other = latents.clone()
    other[:, :, 1:] += 1.0
    on = model.predict(latents, t, text), model.predict(other, t, text)
    off = (
        model.predict(latents, t, text, temporal=False),
        model.predict(other, t, text, temporal=False),
    )
    assert not torch.allclose(on[0][:, :, 0], on[1][:, :, 0], atol=1e-5)
    assert torch.allclose(off[0][:, :, 0], off[1][:, :, 0], atol=1e-5)
    assert torch.equal(model.predict(latents, t, text), on[0])


@torch.no_grad()
def test_a_deep_copy_switches_its_own_temporal_layers(model) -> None:
    latents, t, text = _inputs(model)
    twin = copy.deepcopy(model)
    video = model.predict(latents, t, text)
    with model.temporal.off():
        assert torch.equal(twin.predict(latents, t, text), video)
        assert not torch.allclose(model.predict(latents, t, text), video, atol=1e-5)


def test_fast_temporal_convolutions_match_stock_conv3d_values_and_gradients(model) -> None:
    latents, t, text = _inputs(model)
    convs = [m for m in model.unet.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all("forward" in vars(c) for c in convs)
    stock = copy.deepcopy(model)
    for conv in stock.unet.modules():
        if isinstance(conv, torch.nn.Conv3d):
            del conv.forward
    fast_out = model.predict(latents, t, text)
    stock_out = stock.predict(latents, t, text)
    assert torch.allclose(fast_out, stock_out, atol=1e-5)
    fast_out.square().sum().backward()
    stock_out.square().sum().backward()
    for fast_conv, stock_conv in zip(
        convs, [m for m in stock.unet.modules() if isinstance(m, torch.nn.Conv3d)], strict=True
    ):
        assert torch.allclose(fast_conv.weight.grad, stock_conv.weight.grad, rtol=1e-4, atol=1e-5)
    model.zero_grad(set_to_none=True)


def test_a_temporal_convolution_with_a_spatial_kernel_keeps_the_stock_path() -> None:
    from diffusers.models.resnet import TemporalConvLayer

    from story.models.temporal import fast_temporal_convs

    layer = TemporalConvLayer(32, 32, norm_num_groups=8)
    layer.conv1[-1] = torch.nn.Conv3d(32, 32, (3, 3, 3), padding=(1, 1, 1))
    assert fast_temporal_convs(layer) == 3
    assert "forward" not in vars(layer.conv1[-1])


def test_blur_levels_remove_fine_structure() -> None:
    fine = (torch.arange(16).reshape(1, 1, 1, 16) % 2).float().expand(1, 1, 16, 16)
    assert torch.equal(blur_structure(fine, 0), fine)
    blurred = blur_structure(fine, 2)
    assert blurred.shape == fine.shape
    assert blurred.std() < 0.05 * fine.std()


def test_the_encoder_is_told_the_detail_level() -> None:
    torch.manual_seed(0)
    encoder = StructureEncoder(1, (8, 16), downsample_factor=2, hidden_channels=8, detail_levels=3)
    for projection in encoder.projections:
        torch.nn.init.normal_(projection.weight, std=0.5)
    flat = torch.zeros(1, 1, 8, 8)
    level0, level2 = encoder(flat, 0)[0], encoder(flat, 2)[0]
    assert not torch.allclose(level0, level2)


@torch.no_grad()
def test_temporal_guidance_one_is_the_plain_video_model(model) -> None:
    text = model.encode_prompts(["a blue ball"])
    null = model.encode_prompts([""])

    def run(**kw):
        g = torch.Generator().manual_seed(5)
        return sample_latents(model, text, null, steps=3, guidance=4.0, generator=g, **kw)

    plain = run()
    assert torch.equal(run(temporal_guidance=1.0), plain)
    pushed = run(temporal_guidance=2.0)
    assert torch.isfinite(pushed).all() and not torch.allclose(pushed, plain)
    with pytest.raises(ValueError, match="detail"):
        run(detail=-1)
