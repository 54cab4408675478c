"""The training losses: the autoencoder's colour term (blind to texture inside a window, not to a
shifted hue), its latent noise and temporal term, and the U-Net's temporal term."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from story.models.losses import autoencoder_loss, diffusion_loss, pooled_colour_error


def test_pooled_colour_error_sees_hue_not_stripes() -> None:
    red = torch.tensor([0.8, -0.7, -0.7]).view(1, 3, 1, 1)
    white = torch.ones(1, 3, 1, 1)
    rows = torch.arange(8).view(1, 1, 8, 1) % 2 == 0
    striped = torch.where(rows, red, white).expand(1, 3, 8, 8)
    swapped = torch.where(~rows, red, white).expand(1, 3, 8, 8)  # the stripes one row down
    orange = striped + torch.tensor([0.0, 0.4, -0.2]).view(1, 3, 1, 1)
    assert pooled_colour_error(swapped, striped, pool=4) < 1e-6
    assert (swapped - striped).abs().mean() > 0.5, "per pixel, the shifted stripes differ"
    assert abs(float(pooled_colour_error(orange, striped, pool=4)) - 0.2) < 1e-5
    weights = torch.zeros(1, 1, 8, 8)
    weights[..., :4, :4] = 1.0
    half = orange.clone()
    half[..., 4:, :] = striped[..., 4:, :]
    assert pooled_colour_error(half, striped, 4, weights) > pooled_colour_error(half, striped, 4)


class _ErrorModel:
    """A stand-in for StructureT2V whose prediction is the exact v target plus a chosen error,
    so the loss of a known error pattern can be read."""

    def __init__(self, clean: torch.Tensor, error: torch.Tensor) -> None:
        from diffusers import DDPMScheduler

        self.scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
        self.config = SimpleNamespace(prediction_type="v_prediction")
        self.clean, self.error = clean, error

    def encode_structure(self, structure, detail):  # noqa: ANN001, ANN201 - stub
        return None

    def drawn_noise(self, noisy, t):  # noqa: ANN001, ANN201 - stub
        """The noise the loss added to the clean latents, read back from the noisy ones."""
        a = self.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        return (noisy - a.sqrt() * self.clean) / (1 - a).sqrt()

    def predict(self, noisy, t, text, features, temporal=True):  # noqa: ANN001, ANN201 - stub
        noise = self.drawn_noise(noisy, t)
        return self.scheduler.get_velocity(self.clean, noise, t) + self.error


def test_the_temporal_loss_charges_an_error_that_flickers_not_one_shared_by_the_frames() -> None:
    clean = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    e0 = 0.3 * torch.randn(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    signs = torch.tensor([1.0, -1.0] * 3).view(1, 1, 6, 1, 1)
    shared, flicker = e0.expand(-1, -1, 6, -1, -1), e0 * signs

    def loss(error: torch.Tensor, weight: float, temporal: bool = True) -> float:
        model = _ErrorModel(clean, error)
        generator = torch.Generator().manual_seed(2)
        return float(
            diffusion_loss(
                model,
                clean,
                None,
                None,
                0.0,
                generator=generator,
                temporal=temporal,
                temporal_weight=weight,
            )
        )

    plain = float(e0.square().mean())
    assert abs(loss(shared, 0.0) - plain) < 1e-3 and abs(loss(flicker, 0.0) - plain) < 1e-3
    assert abs(loss(shared, 1.0) - plain) < 1e-3, "an error the frames share costs nothing more"
    # Every one of the 5 frame-to-frame steps changes the error by 2 e0: 4 |e0|^2 on average.
    assert abs(loss(flicker, 1.0) - plain * (1 + 4)) < 2e-3
    assert abs(loss(flicker, 1.0, temporal=False) - plain) < 1e-3, "image steps: no frames"


def test_the_temporal_loss_in_clean_units_weighs_each_step_by_its_reach_into_the_picture() -> None:
    """A v error e at timestep t is an error noise_t * e in the clean latents the step implies:
    the same flicker costs noise_t^2 as much in clean units, next to nothing near t = 0."""
    clean = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    e0 = 0.3 * torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    flicker = e0 * torch.tensor([1.0, -1.0] * 3).view(1, 1, 6, 1, 1)
    model = _ErrorModel(clean, flicker)

    def extra(units: str, seed: int) -> tuple[float, float]:
        """The temporal term alone, and the timestep the loss drew (from the global generator)."""
        args = (model, clean, None, None, 0.0)
        torch.manual_seed(seed)
        t = int(torch.randint(0, 1000, (1,)))
        losses = []
        for weight in (1.0, 0.0):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            losses.append(
                diffusion_loss(
                    *args, generator=generator, temporal_weight=weight, temporal_units=units
                )
            )
        return float(losses[0] - losses[1]), t

    for seed in range(4):
        output, t = extra("output", seed)
        in_clean, _ = extra("clean", seed)
        noise2 = float(1 - model.scheduler.alphas_cumprod[t])
        assert abs(output - 4 * float(e0.square().mean())) < 2e-3
        assert abs(in_clean - noise2 * output) < 1e-4 * max(1.0, output), (seed, t)
    try:
        diffusion_loss(model, clean, None, None, 0.0, temporal_weight=1.0, temporal_units="x")
    except ValueError as error:
        assert "temporal_units" in str(error)
    else:
        raise AssertionError("an unknown unit was accepted")


class _ShiftVAE:
    """A stand-in autoencoder: the latent is the frame itself (no KL), and decoding adds a chosen
    per-frame offset, so the autoencoder loss of a known reconstruction error can be read."""

    def __init__(self, offsets: torch.Tensor) -> None:
        self.offsets = offsets  # (N frames, 3, H, W), N = batch x frames

    def encode(self, flat: torch.Tensor):  # noqa: ANN201 - stub
        dist = SimpleNamespace(sample=lambda: flat.clone(), kl=lambda: torch.zeros(len(flat)))
        return SimpleNamespace(latent_dist=dist)

    def decode(self, latent: torch.Tensor):  # noqa: ANN201 - stub
        return SimpleNamespace(sample=latent + self.offsets)


def test_the_autoencoder_temporal_term_charges_a_reconstruction_that_flickers() -> None:
    video = torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    e0 = 0.2 * torch.randn(2, 1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 4, 1, 1, 1)
    shared = e0.expand(-1, 4, -1, -1, -1).reshape(8, 3, 8, 8)
    flicker = (e0 * signs).reshape(8, 3, 8, 8)

    def loss(offsets: torch.Tensor, weight: float) -> float:
        return float(autoencoder_loss(_ShiftVAE(offsets), video, temporal_weight=weight))

    plain = float((e0.abs() + e0.square()).mean())
    assert abs(loss(shared, 0.0) - plain) < 1e-5 and abs(loss(flicker, 0.0) - plain) < 1e-5
    assert abs(loss(shared, 1.0) - plain) < 1e-5, "an error the frames share costs nothing more"
    # Each of the 3 frame-to-frame steps changes the error by 2 e0: 4 |e0|^2 on average.
    assert abs(loss(flicker, 1.0) - (plain + 4 * float(e0.square().mean()))) < 1e-5


def test_latent_noise_reaches_the_decoder_fresh_for_every_frame() -> None:
    still = torch.rand(1, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).expand(
        2, 3, 4, 8, 8
    )
    perfect = _ShiftVAE(torch.zeros(8, 3, 8, 8))
    assert float(autoencoder_loss(perfect, still, latent_noise=0.0, temporal_weight=1.0)) < 1e-6
    torch.manual_seed(3)
    noisy = float(autoencoder_loss(perfect, still, latent_noise=0.5))
    torch.manual_seed(3)
    with_temporal = float(autoencoder_loss(perfect, still, latent_noise=0.5, temporal_weight=1.0))
    # A decoder that passes the latent's noise through is charged for it, and since the draw is
    # new in every frame of a still clip, the passed-on noise flickers and the temporal term pays.
    assert noisy > 0.05
    assert with_temporal > noisy + 0.01


class _NoiseModel(_ErrorModel):
    """Records the noise each training step drew (read back from the noisy latents)."""

    def predict(self, noisy, t, text, features, temporal=True):  # noqa: ANN001, ANN201 - stub
        self.noise = self.drawn_noise(noisy, t)
        return super().predict(noisy, t, text, features, temporal)


def test_noise_warp_trains_on_the_noise_the_sampler_starts_from() -> None:
    from story.models.noise_warp import warp_shared

    clean = torch.zeros(2, 4, 6, 8, 8)
    structure = torch.rand(2, 1, 6, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1

    def noise(warp: float, structure=None, temporal: bool = True, latents=clean) -> torch.Tensor:  # noqa: ANN001
        model = _NoiseModel(latents, torch.zeros_like(latents))
        diffusion_loss(
            model,
            latents,
            None,
            structure,
            0.0,
            generator=torch.Generator().manual_seed(4),
            temporal=temporal,
            noise_warp=warp,
        )
        return model.noise

    def frame_correlation(x: torch.Tensor) -> float:
        a, b = x[:, :, 1:].flatten(), x[:, :, :-1].flatten()
        return float((a * b).mean() / (a.square().mean() * b.square().mean()).sqrt())

    assert abs(frame_correlation(noise(0.0))) < 0.1, "plain training noise: frames independent"
    # Without a structure (a text-only step) every frame shares 0.8 of one draw, as sampled.
    assert abs(frame_correlation(noise(0.8)) - 0.8) < 0.1
    # With one, the noise is exactly the sampler's: the shared draw carried along its motion.
    g = torch.Generator().manual_seed(4)
    drawn = torch.randn(clean.shape, generator=g)
    expected = warp_shared(drawn, 0.8, structure, g)
    assert torch.allclose(noise(0.8, structure), expected, atol=1e-4)
    # Image steps have no frames to share a draw across.
    image = clean[:, :, :1]
    assert torch.allclose(noise(0.8, temporal=False, latents=image), noise(0.0, latents=image))
