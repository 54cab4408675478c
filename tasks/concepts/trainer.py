"""Concept training: a `<name>` token (TimeInv table, optional LoRA) from a few images.

One trainer, five methods, so they can be compared:
- `none`: no training; the token is the class word's embedding (the baseline).
- `ti`: textual inversion, one vector for every timestep.
- `ti_lora`: that vector plus LoRA on the U-Net's spatial attention.
- `timeinv`: a table of `buckets` vectors, one per timestep bucket.
- `timeinv_lora`: the table plus LoRA (the paper's method).

The base model is copied and left unchanged; the result is a `ConceptPack`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from story.models.losses import min_snr_weight
from story.models.t2v import StructureT2V
from story.models.timeinv import (
    LORA_TARGETS,
    TimeInvTable,
    add_lora,
    class_word_embedding,
    concept_states,
    lora_adapters,
    lora_parameters,
    lora_state_dict,
    remove_lora,
    set_active_loras,
    tokenize_concepts,
)
from story.tasks.concepts.decoder import train_decoder
from story.tasks.concepts.errors import ConceptError
from story.tasks.concepts.images import ConceptImages, mask_sha256, read_concept_images
from story.tasks.concepts.pack import ConceptPack
from story.tasks.concepts.params import ConceptParams, check_name
from story.tasks.concepts.training_data import PseudoVideos, TrainingClip
from story.tasks.hashing import sha256_bytes
from story.tasks.provenance.checkpoint_identity import model_fingerprint

TEMPLATES: tuple[str, ...] = (
    "<name>",
    "a <name>",
    "a photo of a <name>",
    "a <name> on the ground",
    "a still <name>",
    "a <name> in a scene",
    "a rendering of the <name>",
    "a close view of a <name>",
)


@dataclass
class TrainResult:
    """A trained pack and how its training went."""

    pack: ConceptPack
    loss_curve: list[dict[str, float]]
    seconds: float


def concept_loss(
    model: StructureT2V,
    latents: torch.Tensor,
    text: torch.Tensor,
    timesteps: torch.Tensor,
    structure: torch.Tensor | None,
    weights: torch.Tensor,
    gamma: float,
    generator: torch.Generator | None = None,
    pixel_weights: torch.Tensor | None = None,
    temporal: bool = True,
) -> torch.Tensor:
    """The base model's denoising loss (same target and min-SNR weights) at given timesteps.

    `pixel_weights` (B, 1, H, W) at any resolution weight the error per latent pixel (e.g. the
    object up-weighted), normalised per clip so the loss scale stays the same. `temporal=False`
    denoises every frame as an image (the model's image step).
    """
    scheduler = model.scheduler
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    v_pred = model.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, timesteps) if v_pred else noise
    features = model.encode_structure(structure) if structure is not None else None
    pred = model.predict(noisy, timesteps, text, features, temporal=temporal)
    error = F.mse_loss(pred, target, reduction="none")
    if pixel_weights is None:
        per_clip = error.mean(dim=(1, 2, 3, 4))
    else:
        w = F.adaptive_avg_pool2d(pixel_weights.to(error.device), error.shape[-2:])[:, :, None]
        per_clip = (error * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))
    snr_weight = min_snr_weight(scheduler, timesteps.cpu(), gamma, v_pred).to(latents.device)
    return (per_clip * snr_weight * weights).sum() / weights.sum()


def _train_decoder(
    work: StructureT2V,
    videos: PseudoVideos,
    regularization: Sequence[TrainingClip],
    params: ConceptParams,
    rng: np.random.Generator,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """The concept's decoder top (`decoder.py`), on single frames: the augmented images with their
    object masks, and a quarter of each batch from the regularisation clips when there are any."""
    own = params.decoder_batch - (params.decoder_batch // 4 if regularization else 0)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        clips = [videos.clip(int(i), rng) for i in rng.integers(0, len(videos.images), own)]
        images = [v[:, 0] for v, _, _ in clips]
        masks = [m for _, _, m in clips]
        for _ in range(params.decoder_batch - own):
            clip = regularization[int(rng.integers(0, len(regularization)))]
            images.append(clip.video[:, int(rng.integers(0, clip.video.shape[1]))])
            masks.append(torch.zeros_like(masks[0]))
        return torch.stack(images).to(work.device), torch.stack(masks).to(work.device)

    return train_decoder(
        work.vae, sample, params.decoder_steps, params.decoder_lr, params.object_weight
    )


DECODER_STREAM = 7
"""The second seed word of `train_concept_decoder`'s generator: its draws are its own, not the
token's."""


def train_concept_decoder(
    model: StructureT2V,
    images: str | Path | ConceptImages,
    params: ConceptParams,
    *,
    depth: Callable[[np.ndarray], np.ndarray] | None = None,
    regularization: Sequence[TrainingClip] = (),
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """A concept's decoder top (`params.decoder_steps` at `params.decoder_lr`) trained on its own,
    without the token: it reads only the images and the regularisation clips, so one decoder per
    (images, seed) can serve every token method, which then differ in the token alone. Draws
    come from `default_rng([params.seed, DECODER_STREAM])`; the model is left unchanged."""
    if params.decoder_steps < 1:
        raise ConceptError("train_concept_decoder needs decoder_steps >= 1")
    data = (
        images
        if isinstance(images, ConceptImages)
        else read_concept_images(images, params.source_size)
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(params.threads)
    try:
        torch.manual_seed(params.seed)
        rng = np.random.default_rng([params.seed, DECODER_STREAM])
        cfg = model.config
        videos = PseudoVideos(
            data.images, data.masks, depth or default_depth(), 1, cfg.height, cfg.width, params
        )
        return _train_decoder(model, videos, regularization, params, rng)
    finally:
        torch.set_num_threads(previous)


def default_depth(checkpoints: str | Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The bundled tiny depth net as `frames -> (T, H, W)` normalised disparity."""
    from story.models.depth import load_depth_estimator

    if checkpoints is None:
        from story.tasks.settings import get_settings

        checkpoints = get_settings().checkpoints
    estimator = load_depth_estimator("tiny", checkpoints, device="cpu")
    return estimator.estimate


def train_concept(
    model: StructureT2V,
    name: str,
    images: str | Path | ConceptImages,
    class_word: str,
    params: ConceptParams | None = None,
    *,
    out: str | Path | None = None,
    depth: Callable[[np.ndarray], np.ndarray] | None = None,
    regularization: Sequence[TrainingClip] = (),
    base_checkpoint: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train `<name>` on the images with the chosen method; the model itself is left unchanged.

    `depth` maps (T, H, W, 3) uint8 frames to (T, H, W) disparity in [-1, 1] (default: the
    bundled tiny depth net); `base_checkpoint` is the model's fingerprint if already known.
    `regularization` clips keep the LoRA from drifting away from the base model on the class
    word's usual clips; their captions do not name the concept, so methods without LoRA have
    nothing they could train on them and leave them out.
    """
    params = params or ConceptParams()
    check_name(name)
    data = (
        images
        if isinstance(images, ConceptImages)
        else read_concept_images(images, params.source_size)
    )
    if not params.uses_lora:
        regularization = ()
    previous = torch.get_num_threads()
    torch.set_num_threads(params.threads)
    try:
        return _train(
            model,
            name,
            data,
            class_word,
            params,
            out,
            depth,
            regularization,
            base_checkpoint,
            progress,
        )
    finally:
        torch.set_num_threads(previous)


def _train(
    model: StructureT2V,
    name: str,
    data: ConceptImages,
    class_word: str,
    params: ConceptParams,
    out: str | Path | None,
    depth: Callable[[np.ndarray], np.ndarray] | None,
    regularization: Sequence[TrainingClip],
    base_checkpoint: str | None,
    progress: Callable[[int, int, float], None] | None,
) -> TrainResult:
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    started = time.monotonic()
    fingerprint = base_checkpoint or model_fingerprint(model)
    encoder = model.text_encoder()
    # The text encoder is shared, not copied: it stays frozen and unchanged.
    work = copy.deepcopy(model, {id(encoder): encoder})
    work.set_text_encoder(encoder)
    for module in (work.vae, work.unet, work.structure_encoder):
        module.requires_grad_(False)
    work.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    table = TimeInvTable.from_vector(
        class_word_embedding(encoder, class_word), params.table_buckets
    )
    groups: list[dict[str, Any]] = [{"params": [table.table], "lr": params.lr_table}]
    if params.uses_lora:
        for existing in lora_adapters(work.unet):
            remove_lora(work.unet, existing)
        add_lora(
            work.unet, name, params.lora_rank, params.lora_alpha, LORA_TARGETS[params.lora_targets]
        )
        set_active_loras(work.unet, [name])
        groups.append({"params": lora_parameters(work.unet, name), "lr": params.lr_lora})
    cfg = work.config
    frames = params.pseudo_frames or cfg.frames
    if frames > cfg.frames:
        raise ConceptError(
            f"pseudo_frames {frames} is longer than the model's clip ({cfg.frames} frames)"
        )
    images_only = frames == 1
    videos = PseudoVideos(
        data.images, data.masks, depth or default_depth(), frames, cfg.height, cfg.width, params
    )
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    trainable = [p for group in groups for p in group["params"]]
    tables = {name: table}
    prompt_cache: dict[str, torch.Tensor] = {}
    curve: list[dict[str, float]] = []
    window: list[float] = []
    steps = 0 if params.method == "none" else params.steps
    for step in range(1, steps + 1):
        picks = rng.integers(0, len(videos.images), params.batch)
        pairs = [videos.clip(int(i), rng) for i in picks]
        prompts = [
            TEMPLATES[int(rng.integers(len(TEMPLATES)))].replace("<name>", f"<{name}>")
            for _ in picks
        ]
        video = torch.stack([v for v, _, _ in pairs])
        structure = torch.stack([s for _, s, _ in pairs])
        objects = torch.stack([m for _, _, m in pairs])
        reg = (
            [regularization[int(i)] for i in rng.integers(0, len(regularization), 1)]
            if regularization
            else []
        )
        n_reg = len(reg)
        if reg:
            # A regularisation clip is cut to the pseudo-videos' length: one random frame for
            # image steps, its first frames otherwise.
            cut = []
            for clip in reg:
                first = int(rng.integers(0, clip.video.shape[1] - frames + 1)) if images_only else 0
                cut.append(
                    (
                        clip.video[:, first : first + frames],
                        clip.structure[:, first : first + frames],
                    )
                )
            video = torch.cat([video, torch.stack([v for v, _ in cut])])
            structure = torch.cat([structure, torch.stack([s for _, s in cut])])
            objects = torch.cat([objects, torch.ones(n_reg, *objects.shape[1:])])
        total = video.shape[0]
        low, high = 0, work.scheduler.config.num_train_timesteps
        if params.uses_lora and params.lora_max_t < high:
            # The LoRA only acts below lora_max_t: a step trains either there with it on, or
            # above with it off (so every sample still sees a uniform timestep).
            lora_on = rng.random() < params.lora_max_t / high
            low, high = (0, params.lora_max_t) if lora_on else (params.lora_max_t, high)
            set_active_loras(work.unet, [name] if lora_on else [])
        timesteps = torch.randint(low, high, (total,), generator=generator)
        with torch.no_grad():
            latents = work.encode_video(video.to(work.device), generator)
        tokens = tokenize_concepts(encoder, prompts, cfg.max_text_length)
        text = concept_states(
            encoder, tokens, tables, timesteps[: len(prompts)], cfg.max_text_length
        )
        if reg:
            for clip in reg:
                if clip.caption not in prompt_cache:
                    prompt_cache[clip.caption] = work.encode_prompts([clip.caption]).cpu()
            text = torch.cat([text, torch.cat([prompt_cache[c.caption] for c in reg])])
        weights = torch.tensor([1.0] * len(prompts) + [params.reg_weight] * n_reg)
        guide = None if rng.random() < params.structure_dropout else structure.to(work.device)
        loss = concept_loss(
            work,
            latents,
            text.to(work.device),
            timesteps.to(work.device),
            guide,
            weights.to(work.device),
            params.min_snr_gamma,
            generator,
            pixel_weights=1.0 + params.object_weight * objects,
            temporal=not images_only,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        window.append(float(loss.detach()))
        if step % params.log_every == 0 or step == steps:
            curve.append({"step": step, "loss": float(np.mean(window))})
            window = []
        if progress is not None:
            progress(step, steps, float(loss.detach()))
    lora = lora_state_dict(work.unet, name) if params.uses_lora else None
    decoder: dict[str, torch.Tensor] | None = None
    decoder_curve: list[dict[str, float]] = []
    if params.decoder_steps:
        decoder, decoder_curve = _train_decoder(work, videos, regularization, params, rng)
    seconds = time.monotonic() - started
    meta = {
        "params": asdict(params),
        "steps": steps,
        "loss_curve": curve,
        "images": [
            {"file": p.name, "sha256": h, "mask_sha256": mask_sha256(p)}
            for p, h in zip(data.files, data.sha256, strict=True)
        ],
        "images_folder": str(data.folder),
        "text_encoder": cfg.text_encoder,
        "lora": (
            {
                "rank": params.lora_rank,
                "alpha": params.lora_alpha,
                "targets": LORA_TARGETS[params.lora_targets],
                "max_t": params.lora_max_t,
            }
            if lora
            else None
        ),
        "decoder": (
            {
                "steps": params.decoder_steps,
                "lr": params.decoder_lr,
                "parameters": len(decoder),
                "loss_curve": decoder_curve,
            }
            if decoder
            else None
        ),
        "regularization_clips": len(regularization),
        "train_seconds": round(seconds, 2),
        "images_sha256": sha256_bytes("".join(data.sha256).encode()),
    }
    pack = ConceptPack(
        name=name,
        class_word=class_word,
        method=params.method,
        base_checkpoint=fingerprint,
        table=table.table.detach().cpu(),
        lora=lora,
        meta=meta,
        decoder=decoder,
    )
    if out is not None:
        pack.save(out)
    return TrainResult(pack, curve, seconds)
