"""Sampling: seeded determinism, save/load round trip, tau semantics, structure strength."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from story.models.sampler import SamplerStats, sample_latents
from story.models.t2v import StructureT2V, random_tiny
from tests.models.t2v_stubs import HashTextEncoder


@pytest.fixture(scope="module")
def model() -> StructureT2V:
    bundle = random_tiny(text_dim=16, frames=2).eval()
    for projection in bundle.structure_encoder.projections:
        torch.nn.init.normal_(projection.weight, std=0.5)
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


def _run(model, structure=None, seed=0, **kw):
    text = model.encode_prompts(["a red cube on the grass"])
    null = model.encode_prompts([""])
    stats = SamplerStats()
    generator = torch.Generator().manual_seed(seed)
    out = sample_latents(
        model, text, null, structure, steps=4, guidance=4.0, generator=generator, stats=stats, **kw
    )
    return out, stats


def _structure(model):
    g = torch.Generator().manual_seed(3)
    c = model.config
    return torch.rand(1, 1, c.frames, c.height, c.width, generator=g) * 2 - 1


def test_same_seed_same_frames_other_seed_other_frames(model) -> None:
    a, _ = _run(model, _structure(model), seed=7)
    b, _ = _run(model, _structure(model), seed=7)
    c, _ = _run(model, _structure(model), seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_saved_and_loaded_bundle_samples_identically(model, tmp_path) -> None:
    model.save_pretrained(tmp_path / "ckpt")
    for name in ("vae", "unet", "structure_encoder", "scheduler"):
        assert (tmp_path / "ckpt" / name).is_dir()
    loaded = StructureT2V.from_pretrained(tmp_path / "ckpt", device="cpu")
    loaded.set_text_encoder(model.text_encoder())
    a, _ = _run(model, _structure(model))
    b, _ = _run(loaded, _structure(loaded))
    assert torch.equal(a, b)
    assert torch.equal(model.decode_latents(a), loaded.decode_latents(b))


def test_tau_limits_structure_to_early_steps(model) -> None:
    timesteps = [999, 749, 499, 249]
    _, always = _run(model, _structure(model), tau=0)
    assert (always.steps, always.structure_steps, always.encoder_runs) == (4, 4, 1)
    _, half = _run(model, _structure(model), tau=500)
    assert half.structure_steps == sum(t >= 500 for t in timesteps) == 2
    assert half.encoder_runs == 1
    never, none = _run(model, _structure(model), tau=1000)
    assert (none.structure_steps, none.encoder_runs) == (0, 0)
    text_only, _ = _run(model, None)
    assert torch.equal(never, text_only)


def test_encoder_is_not_run_when_no_step_reaches_tau(model) -> None:
    calls = []
    handle = model.structure_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        _run(model, _structure(model), tau=1000)
        assert calls == []
        _run(model, _structure(model), tau=900)
        assert calls == [1]
    finally:
        handle.remove()


def test_strength_scales_the_effect_and_zero_equals_text_only(model) -> None:
    text_only, _ = _run(model, None)
    zero, stats = _run(model, _structure(model), strength=0.0)
    assert torch.equal(zero, text_only) and stats.encoder_runs == 0
    weak, _ = _run(model, _structure(model), strength=0.5)
    strong, _ = _run(model, _structure(model), strength=1.5)
    assert 0 < (weak - text_only).abs().mean() < (strong - text_only).abs().mean()


def test_bad_parameters_are_rejected(model) -> None:
    with pytest.raises(ValueError, match="tau"):
        _run(model, None, tau=1200)
    text = model.encode_prompts(["x"])
    with pytest.raises(ValueError, match="null_states"):
        sample_latents(model, text, None, None, steps=2, guidance=3.0)


def test_the_pipeline_signature_is_the_one_home_of_sampling_defaults(model) -> None:
    from story.models.pipeline import SAMPLING_DEFAULTS, StructureGuidedPipeline
    from story.tasks.render.synthesize import render_batch, synthesize

    for function in (synthesize, render_batch):
        parameters = inspect.signature(function).parameters
        # noise_warp None: the default, unless noise_share is set (then 0; `implied_knobs`).
        defaults = {k: parameters[k].default for k in SAMPLING_DEFAULTS}
        assert defaults.pop("noise_warp") is None
        assert defaults == {k: v for k, v in SAMPLING_DEFAULTS.items() if k != "noise_warp"}
    # The CLI states the default without importing the model stack: it must say the same.
    from story.flows.render_cli import NoiseWarpOpt, StillHoldOpt

    assert f"({SAMPLING_DEFAULTS['noise_warp']:g};" in NoiseWarpOpt.__metadata__[0].help
    assert f"({SAMPLING_DEFAULTS['still_hold']:g};" in StillHoldOpt.__metadata__[0].help
    pipe = StructureGuidedPipeline(model)
    text = model.encode_prompts(["a red cube on the grass"])
    null = model.encode_prompts([""])
    seen: list[int] = []

    def count(pipe, step, t, tensors):
        seen.append(step)
        return tensors

    g = torch.Generator().manual_seed(1)
    out = pipe(text, null, steps=3, generator=g, callback_on_step_end=count)
    assert seen == [0, 1, 2]
    direct = sample_latents(
        model,
        text,
        null,
        steps=3,
        guidance=4.0,
        noise_warp=SAMPLING_DEFAULTS["noise_warp"],
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(out, direct)
    video = pipe(text, null, steps=2, output_type="pt", generator=torch.Generator().manual_seed(1))
    assert video.shape[:3] == (1, 3, model.config.frames)


def test_noise_share_correlates_the_start_across_frames_and_zero_is_the_old_start() -> None:
    from story.models.sampler import share_across_frames

    plain = torch.randn((64, 4, 8, 6, 6), generator=torch.Generator().manual_seed(5))
    assert torch.equal(share_across_frames(plain, 0.0, torch.Generator().manual_seed(9)), plain)
    for share in (0.25, 0.5, 0.8):
        mixed = share_across_frames(plain, share, torch.Generator().manual_seed(9))
        assert abs(float(mixed.std()) - 1.0) < 0.02
        a, b = mixed[:, :, 0].flatten(), mixed[:, :, 5].flatten()
        correlation = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        assert abs(correlation - share) < 0.03, (share, correlation)
    with pytest.raises(ValueError, match="noise_share"):
        share_across_frames(plain, 1.0, None)


@pytest.mark.parametrize(
    ("knob", "bad", "message"),
    [("noise_share", -0.1, "noise_share"), ("noise_warp", 1.0, "noise_warp must be in")],
)
def test_noise_knobs_reach_the_sampler_and_stay_seeded(model, knob, bad, message) -> None:
    plain, _ = _run(model, _structure(model), seed=4)
    zero, _ = _run(model, _structure(model), seed=4, **{knob: 0.0})
    shared, _ = _run(model, _structure(model), seed=4, **{knob: 0.6})
    again, _ = _run(model, _structure(model), seed=4, **{knob: 0.6})
    assert torch.equal(plain, zero)
    assert torch.equal(shared, again) and not torch.allclose(shared, plain)
    with pytest.raises(ValueError, match=message):
        _run(model, None, **{knob: bad})


def test_the_two_noise_knobs_are_not_combined(model) -> None:
    from story.tasks.render.synthesize import synthesize

    with pytest.raises(ValueError, match="use one of them"):
        _run(model, _structure(model), noise_warp=0.5, noise_share=0.5)
    # A product call that sets noise_share alone turns the default noise_warp off.
    guide = _structure(model)[0, 0].numpy()
    alone = synthesize(model, "a red cube on the grass", guide, steps=2, noise_share=0.5)
    spelled = synthesize(
        model, "a red cube on the grass", guide, steps=2, noise_share=0.5, noise_warp=0.0
    )
    assert np.array_equal(alone, spelled)
