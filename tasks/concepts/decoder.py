"""A concept's own decoder top: for a character whose colours the shared decoder cannot draw.

The token table and LoRA steer the U-Net's latents, but a latent is turned into pixels by the
model's VAE decoder, shared by every prompt. Measured on t2v-64, that decoder cannot draw bob's
red or zib's pink from any latent (docs/concepts.md), so no U-Net-side method can show them.
A concept may therefore carry new weights for the decoder's last two up blocks and output layer
(the full-resolution end, ~0.3 M of t2v-64's 2.4 M decoder weights), fine-tuned to reconstruct
the character's images (augmented as for the token) and, when given, frames of the
regularisation clips, so the rest of the world keeps its look. They replace the decoder's while
a prompt names the concept and are put back afterwards; the latent space is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from story.tasks.concepts.params import ConceptError


def adapted_names(vae: torch.nn.Module) -> list[str]:
    """Names of the decoder parameters a concept may replace (the last two up blocks and the
    output layer, as `vae.named_parameters()` spells them)."""
    last = len(vae.decoder.up_blocks) - 1
    prefixes = tuple(
        f"decoder.{part}."
        for part in (
            *(f"up_blocks.{i}" for i in range(max(0, last - 1), last + 1)),
            "conv_norm_out",
            "conv_out",
        )
    )
    return [name for name, _ in vae.named_parameters() if name.startswith(prefixes)]


def train_decoder(
    vae: torch.nn.Module,
    sample: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    object_weight: float,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Fine-tune a copy of the decoder top on `sample()` batches of (images (B, 3, H, W) in
    [-1, 1], object masks (B, 1, H, W)); returns the new weights and the loss curve. `vae` is
    left unchanged."""
    import copy

    work = copy.deepcopy(vae).eval()
    work.requires_grad_(False)
    names = set(adapted_names(work))
    params = [p for n, p in work.named_parameters() if n in names]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    curve, window = [], []
    for step in range(1, steps + 1):
        images, masks = sample()
        with torch.no_grad():
            latents = work.encode(images).latent_dist.sample()
        recon = work.decode(latents).sample
        error = (recon - images).abs() + (recon - images).square()
        loss = (error * (1.0 + object_weight * masks)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        if step % 10 == 0 or step == steps:
            curve.append({"step": step, "loss": float(np.mean(window))})
            window = []
    weights = {n: p.detach().cpu().clone() for n, p in work.named_parameters() if n in names}
    return weights, curve


@contextmanager
def swapped_decoder(
    vae: torch.nn.Module, weights: dict[str, torch.Tensor], owner: str
) -> Iterator[None]:
    """The decoder with a concept's weights in place inside the block, its own ones after."""
    params = dict(vae.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ConceptError(f"concept <{owner}>: decoder weights {unknown[:3]} fit no layer")
    saved = {n: params[n].detach().clone() for n in weights}
    try:
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def decoder_owner(names: Sequence[str], decoders: dict[str, bool]) -> str | None:
    """The one concept of a prompt whose decoder renders it (None: the model's own); a prompt
    naming two concepts with decoders of their own is refused, as one frame has one decoder."""
    owners = [n for n in names if decoders.get(n)]
    if len(owners) > 1:
        raise ConceptError(
            f"the prompt names {', '.join(f'<{n}>' for n in owners)}, each with its own decoder: "
            "a shot can use one of them (retrain the others with --decoder-steps 0)"
        )
    return owners[0] if owners else None
