"""Training losses of the structure-guided model, shared by the trainer and concept training:
the denoising loss (v or epsilon, min-SNR weighting, image steps), latent-cell weights for
objects, the autoencoder's loss with its edge, colour and temporal terms, and the latent
smoother's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr

from story.models.noise_warp import warp_shared
from story.models.t2v import StructureT2V
from story.models.vae import encode_video


def min_snr_weight(scheduler, t: torch.Tensor, gamma: float, v_pred: bool) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) for epsilon or v targets."""
    snr = compute_snr(scheduler, t)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if v_pred else clipped / snr


TEMPORAL_UNITS = ("output", "clean")


def clean_error_scale(scheduler, t: torch.Tensor, v_pred: bool) -> torch.Tensor:
    """Per-sample factor that turns a squared error of the model's output at timestep t into
    the squared error of the clean latents it implies: noise^2 for v (x0 = signal x_t - noise v),
    noise^2 / signal^2 for epsilon (x0 = (x_t - noise eps) / signal)."""
    alphas = scheduler.alphas_cumprod.to(t.device)[t].float()
    return (1 - alphas) if v_pred else (1 - alphas) / alphas


def diffusion_loss(
    model: StructureT2V,
    latents: torch.Tensor,
    text: torch.Tensor,
    structure: torch.Tensor | None,
    gamma: float,
    generator: torch.Generator | None = None,
    cubic: bool = False,
    weights: torch.Tensor | None = None,
    detail: int = 0,
    temporal: bool = True,
    temporal_weight: float = 0.0,
    temporal_units: str = "output",
    noise_warp: float = 0.0,
) -> torch.Tensor:
    """One denoising loss on a batch of clean latents; structure None means text only.

    `gamma` > 0 applies min-SNR weighting, else every timestep weighs the same. `cubic` draws
    t = (1 - u^3) T (T2I-Adapter), favouring the noisy steps where the layout is decided.
    `weights` (B, 1, T, h, w) weigh latent cells; `temporal=False` is an image step.
    `temporal_weight` w > 0 adds w times the mean squared frame-to-frame change of the error
    (pred - target) on video steps: |e[t+1] - e[t]|^2 = |e[t+1]|^2 + |e[t]|^2 - 2 e[t+1].e[t],
    so an error shared by neighbouring frames costs nothing extra and one that flickers costs up
    to twice again. The target's own motion is in the target, so motion is not penalised.
    `temporal_units` says where that change is measured: "output" in the model's own output
    (v or epsilon), where a step near t = 0 weighs most although its error barely reaches the
    clean video; "clean" in the clean latents the step implies (x0 = signal x_t - noise v for v,
    (x_t - noise eps) / signal for epsilon), where flicker lives, so the weight goes with each
    step's share of the picture's error.
    `noise_warp` w > 0 noises video steps the way the sampler starts them at `noise_warp` w
    (`noise_warp.warp_shared`): part of one draw carried along the structure's motion, or the
    same draw in every frame without a structure, so the model learns the noise it is sampled
    from (after Go-with-the-Flow, Burgert et al., 2025).
    """
    if temporal_units not in TEMPORAL_UNITS:
        raise ValueError(f"temporal_units {temporal_units!r}: one of {TEMPORAL_UNITS}")
    scheduler = model.scheduler
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    if noise_warp > 0 and temporal and latents.shape[2] > 1:
        noise = warp_shared(noise, noise_warp, structure, generator)
    steps = scheduler.config.num_train_timesteps
    if cubic:
        u = torch.rand(b, generator=generator, device=latents.device)
        t = ((1 - u**3) * steps).long().clamp(0, steps - 1)
    else:
        t = torch.randint(0, steps, (b,), device=latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    v_pred = model.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v_pred else noise
    features = model.encode_structure(structure, detail) if structure is not None else None
    pred = model.predict(noisy, t, text, features, temporal=temporal)
    error = F.mse_loss(pred, target, reduction="none")
    if weights is not None:
        error = error * weights / weights.mean(dim=(1, 2, 3, 4), keepdim=True)
    per_clip = error.mean(dim=(1, 2, 3, 4))
    if temporal_weight > 0 and temporal and latents.shape[2] > 1:
        change = (pred - target).diff(dim=2).square().mean(dim=(1, 2, 3, 4))
        if temporal_units == "clean":
            change = change * clean_error_scale(scheduler, t, v_pred).to(change)
        per_clip = per_clip + temporal_weight * change
    if gamma <= 0:
        return per_clip.mean()
    return (per_clip * min_snr_weight(scheduler, t.cpu(), gamma, v_pred).to(t.device)).mean()


def object_weights(objects: torch.Tensor, factor: int, weight: float) -> torch.Tensor:
    """(B, T, H, W) object masks -> (B, 1, T, H/f, W/f) loss weights, 1 + `weight` on cells
    that touch an object."""
    b, frames, h, w = objects.shape
    cells = F.max_pool2d(objects.reshape(b * frames, 1, h, w).float(), factor)
    cells = cells.reshape(b, frames, 1, h // factor, w // factor).permute(0, 2, 1, 3, 4)
    return 1.0 + weight * cells


def edge_error(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel L1 between the horizontal and vertical differences of two (N, C, H, W) images
    (zero-padded to the same size): keeps the autoencoder's edges and fine textures sharp."""
    dx = (recon - target)[..., :, 1:] - (recon - target)[..., :, :-1]
    dy = (recon - target)[..., 1:, :] - (recon - target)[..., :-1, :]
    return F.pad(dx.abs(), (0, 1, 0, 0)) + F.pad(dy.abs(), (0, 0, 0, 1))


def pooled_colour_error(
    recon: torch.Tensor, target: torch.Tensor, pool: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean L1 between `pool` x `pool` window averages of two (N, C, H, W) images: the colour a
    region shows, blind to texture, so a decoder that keeps stripes but shifts their hue pays.
    `weights` (N, 1, H, W) are pooled the same way and weight each window (normalised)."""
    error = (F.avg_pool2d(recon, pool) - F.avg_pool2d(target, pool)).abs()
    if weights is None:
        return error.mean()
    w = F.avg_pool2d(weights, pool)
    return (error * w).mean() / w.mean()


def autoencoder_loss(
    vae,
    video: torch.Tensor,
    objects: torch.Tensor | None = None,
    *,
    object_weight: float = 0.0,
    edge_weight: float = 0.0,
    colour_weight: float = 0.0,
    colour_pool: int = 4,
    kl_weight: float = 1e-6,
    latent_noise: float = 0.0,
    temporal_weight: float = 0.0,
) -> torch.Tensor:
    """The per-frame autoencoder's loss on a (B, 3, T, H, W) clip batch in [-1, 1].

    L1 + MSE per pixel (object pixels of the (B, T, H, W) `objects` masks weighted
    1 + `object_weight`), plus an edge term, a pooled-colour term and a small KL term.
    `latent_noise` s decodes latent + s x (the batch's latent std) x a fresh draw per frame, so
    the decoder learns to draw the clean frame from a latent that is a little off, as a U-Net's
    are, frame by frame: the noise is independent between frames, so a decoder that passes it
    through flickers and pays. `temporal_weight` w adds w times the mean squared frame-to-frame
    change of the reconstruction's error, as `diffusion_loss` does for the U-Net's.
    """
    b, _, frames = video.shape[:3]
    flat = video.permute(0, 2, 1, 3, 4).reshape(-1, 3, *video.shape[-2:])
    dist = vae.encode(flat).latent_dist
    latent = dist.sample()
    if latent_noise > 0:
        latent = latent + latent_noise * latent.detach().std() * torch.randn_like(latent)
    recon = vae.decode(latent).sample
    residual = recon - flat
    error = residual.abs() + residual.square()
    if edge_weight:
        error = error + edge_weight * edge_error(recon, flat)
    weights = None
    if objects is not None:
        weights = 1.0 + object_weight * objects.reshape(-1, 1, *flat.shape[-2:]).to(recon)
        error = error * weights
    loss = error.mean() + kl_weight * dist.kl().mean()
    if colour_weight:
        loss = loss + colour_weight * pooled_colour_error(recon, flat, colour_pool, weights)
    if temporal_weight > 0 and frames > 1:
        change = residual.reshape(b, frames, *flat.shape[1:]).diff(dim=1)
        loss = loss + temporal_weight * change.square().mean()
    return loss


def smoother_loss(
    model: StructureT2V,
    video: torch.Tensor,
    latent_noise: float,
    temporal_weight: float = 0.0,
    structure: torch.Tensor | None = None,
) -> torch.Tensor:
    """The latent smoother's loss on real clips (B, 3, T, H, W): it sees the clip's normalised
    latents plus `latent_noise` s x a fresh draw per frame and cell (the frame-to-frame wobble a
    rendered clip's latents carry and a real clip's do not) and is asked for the clean latents;
    `temporal_weight` w adds w times the squared error of the frame-to-frame change, so motion
    the clean latents have is kept, not smoothed away. `structure` (B, C, T, H, W), the clips'
    own, is what a guided smoother reads (None: as for a text-only shot)."""
    with torch.no_grad():
        z = encode_video(model.vae, video, 1.0, sample=False)
        z = (z - model.config.vae_shift) * model.config.vae_scaling
    smoother = model.latent_smoother
    if smoother is None:
        raise ValueError("smoother_loss: the model has no latent smoother to train")
    noisy = z + latent_noise * torch.randn_like(z)
    out = smoother(noisy, structure)
    loss = F.mse_loss(out, z)
    if temporal_weight > 0 and z.shape[2] > 1:
        change = out.diff(dim=2) - z.diff(dim=2)
        loss = loss + temporal_weight * change.square().mean()
    return loss
