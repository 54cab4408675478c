"""What determines a `train_t2v` run (`TrainConfig`, saved as `<out>/train_config.json`) and how
its command line gives it (`parse_args`); the stages themselves are in `train_t2v`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from story.models.losses import TEMPORAL_UNITS
from story.models.noise_warp import check_noise_warp
from story.tasks.errors import StoryError
from story.tasks.training.production_probe import check_reference

STAGES = ("vae", "base", "structure", "joint", "smoother")
TRAINED_LAYERS = ("all", "temporal")
TRAIN_T2V = (
    "Train the structure-guided text-to-video model (the paper's two-stage recipe), resumably."
)


@dataclass
class TrainConfig:
    """Everything that determines a training run; saved as `<out>/train_config.json`."""

    stage: str
    out: str
    init: str | None = None
    warm_start: str | None = None
    """A trained model bundle whose U-Net and structure-encoder weights start a new joint /
    base model wherever a tensor's name and shape match (a new VAE's latent size or channels
    leave the rest at their fresh initialisation); recorded in the run's warm_start.json."""
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    structure_dropout: float = 0.3
    min_snr_gamma: float = 5.0
    cubic_timesteps: bool = False
    frames: int = 8
    height: int = 32
    width: int = 32
    vae_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_heads: int = 4
    encoder_hidden: int = 32
    smoother_hidden: int = 32
    smoother_layers: int = 3
    smoother_guided: bool = False
    """The smoother also reads the clip's structure (its flow and depth); `structure_dropout`
    of its batches come without one, as a text-only shot does."""
    detail_levels: int = 0
    image_ratio: float = 0.0
    image_batch: int = 0
    object_loss_weight: float = 0.0
    temporal_loss_weight: float = 0.0
    temporal_loss_units: str = "output"
    """Where the U-Net's temporal loss measures the error's frame-to-frame change: "output"
    (v or epsilon, as the model predicts it) or "clean" (the clean latents each step implies)."""
    noise_warp: float = 0.0
    """U-Net stages: video steps are noised as the sampler draws at `noise_warp` w (part of one
    draw carried along the clip's structure), so the model is trained on the noise it is sampled
    from (`losses.diffusion_loss`)."""
    probe_noise_warp: float | None = None
    """The in-training probe samples at this noise warp; None: at the run's own `noise_warp`
    (0 samples without it). The product samples at 0.8."""
    production_plots: int = 0
    """At each evaluation, also render this many validation plots the product's way and pair
    them against `production_reference` (`production_probe`); 0: the pixel probe only."""
    production_reference: str | None = None
    """A validation synthesis report of the model the run starts from, at the default sampling."""
    trained_layers: str = "all"
    """U-Net stages: "temporal" trains only the U-Net's temporal convolutions and attentions
    (the structure encoder and every per-frame layer stay as they are), so a run against
    flicker cannot move what a frame looks like on its own; it needs video steps only."""
    latent_noise: float = 0.0
    kl_weight: float = 1e-6
    object_weight: float = 4.0
    edge_weight: float = 0.0
    colour_weight: float = 0.0
    colour_pool: int = 4
    recolour: float = 0.0
    text_encoder: str = "minilm"
    manifest: str | None = None
    depth_model: str = "tiny"
    checkpoints: str | None = None
    checkpoint_every: int = 200
    eval_every: int = 0
    eval_scenes: int = 16
    eval_steps: int = 20
    guidance: float = 4.0
    seed: int = 0
    threads: int = 1
    max_minutes: float = 0.0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise StoryError(f"train_t2v: stage {self.stage!r} is not one of {STAGES}")
        if self.stage == "smoother" and not self.init:
            raise StoryError("train_t2v: stage 'smoother' needs --init, a trained model folder")
        if self.stage in ("structure",) and not self.init:
            raise StoryError("train_t2v: stage 'structure' needs --init, the stage-1 model folder")
        if self.stage in ("base", "joint") and not self.init:
            raise StoryError(
                f"train_t2v: stage {self.stage!r} needs --init, a trained VAE or model"
            )
        if self.temporal_loss_units not in TEMPORAL_UNITS:
            raise StoryError(
                f"train_t2v: temporal_loss_units {self.temporal_loss_units!r} is not one of "
                f"{TEMPORAL_UNITS}"
            )
        if self.trained_layers not in TRAINED_LAYERS:
            raise StoryError(
                f"train_t2v: trained_layers {self.trained_layers!r} is not one of {TRAINED_LAYERS}"
            )
        if self.trained_layers == "temporal" and (
            self.stage not in ("base", "joint") or self.image_ratio
        ):
            raise StoryError(
                "train_t2v: --trained-layers temporal trains a U-Net stage (base or joint) on "
                "video steps only (--image-ratio 0): an image step bypasses the temporal layers"
            )
        if self.production_plots:
            if self.production_plots < 2 or not self.production_reference:
                raise StoryError(
                    "train_t2v: --production-plots needs at least 2 plots and "
                    "--production-reference, a validation report of the starting model"
                )
            check_reference(self.production_reference)
        try:
            check_noise_warp(self.noise_warp)
            if self.probe_noise_warp is not None:
                check_noise_warp(self.probe_noise_warp)
        except ValueError as error:
            raise StoryError(f"train_t2v: {error}") from None
        self.vae_channels = tuple(self.vae_channels)
        self.unet_channels = tuple(self.unet_channels)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        description="Train the structure-guided text-to-video model, one stage at a time."
    )
    defaults = TrainConfig(stage="vae", out="")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--out", required=True, help="run folder (state, logs, model/)")
    parser.add_argument("--init", help="VAE folder (stage 1) or model folder (stage 2 / joint)")
    parser.add_argument("--manifest", help="caption manifest to train on instead of the miniworld")
    parser.add_argument(
        "--warm-start",
        help="trained model bundle whose U-Net / structure-encoder tensors of matching name and "
        "shape start the new model (joint / base stage with a new VAE)",
    )
    for name in (
        "steps",
        "batch",
        "warmup",
        "checkpoint_every",
        "eval_every",
        "eval_scenes",
        "eval_steps",
        "seed",
        "threads",
        "unet_heads",
        "encoder_hidden",
        "smoother_hidden",
        "smoother_layers",
        "latent_channels",
        "detail_levels",
        "image_batch",
        "production_plots",
        "colour_pool",
        "frames",
        "height",
        "width",
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    for name in (
        "lr",
        "weight_decay",
        "ema_decay",
        "caption_dropout",
        "structure_dropout",
        "min_snr_gamma",
        "kl_weight",
        "object_weight",
        "edge_weight",
        "colour_weight",
        "recolour",
        "image_ratio",
        "object_loss_weight",
        "temporal_loss_weight",
        "noise_warp",
        "latent_noise",
        "guidance",
        "max_minutes",
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name)
        )
    for name in ("vae_channels", "unet_channels"):
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            nargs="+",
            default=list(getattr(defaults, name)),
        )
    parser.add_argument(
        "--cubic-timesteps", action="store_true", help="favour noisy steps (structure stages)"
    )
    parser.add_argument(
        "--smoother-guided",
        action="store_true",
        help="smoother stage: a smoother that reads the shot's structure (flow and depth)",
    )
    parser.add_argument(
        "--temporal-loss-units",
        choices=TEMPORAL_UNITS,
        default=defaults.temporal_loss_units,
        help="U-Net stages: measure the temporal loss in the model's output (v / epsilon) or in "
        "the clean latents each step implies",
    )
    parser.add_argument(
        "--probe-noise-warp",
        type=float,
        default=None,
        help="the in-training probe's sampling noise warp (default: the run's --noise-warp)",
    )
    parser.add_argument(
        "--production-reference",
        default=None,
        help="with --production-plots: the starting model's validation synthesis report",
    )
    parser.add_argument(
        "--trained-layers",
        choices=TRAINED_LAYERS,
        default=defaults.trained_layers,
        help="U-Net stages: train every layer, or only the temporal ones (video steps only)",
    )
    parser.add_argument("--depth-model", default=defaults.depth_model)
    parser.add_argument("--text-encoder", default=defaults.text_encoder)
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    return TrainConfig(**vars(args))
