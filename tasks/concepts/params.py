"""What a concept training run is told: the method and its settings, and a valid concept name."""

from __future__ import annotations

from dataclasses import dataclass

from story.models.timeinv import (
    CONCEPT_PATTERN,
    DEFAULT_BUCKETS,
    LORA_TARGETS,
    NUM_TRAIN_TIMESTEPS,
)
from story.tasks.concepts.errors import ConceptError
from story.tasks.concepts.methods import (
    DEFAULT_LR_LORA,
    DEFAULT_LR_TABLE,
    DEFAULT_STEPS,
    METHODS,
)

__all__ = ["ConceptError", "ConceptParams", "check_name"]


@dataclass
class ConceptParams:
    """Everything that determines a concept's training; saved in the pack's JSON.

    The defaults are the settings chosen on validation shots for the bundled tiny model
    (docs/concepts.md): 200 steps (longer runs overfit the five images), zoom-out augmentation
    and a LoRA rate of 5e-5 (higher rates paint the character's colours away from the guide).
    """

    method: str = "timeinv_lora"
    steps: int = DEFAULT_STEPS
    batch: int = 4
    buckets: int = DEFAULT_BUCKETS
    lr_table: float = DEFAULT_LR_TABLE
    lr_lora: float = DEFAULT_LR_LORA
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: str = "attention"
    lora_max_t: int = NUM_TRAIN_TIMESTEPS
    min_snr_gamma: float = 5.0
    structure_dropout: float = 0.3
    object_weight: float = 4.0
    reg_clips: int = 0
    reg_weight: float = 0.5
    crop_scale: float = 0.8
    zoom_out: float = 0.4
    jitter: float = 0.08
    source_size: int = 64
    augment: bool = True
    """Pseudo-video augmentation (random crop, flip, zoom-out, brightness / contrast jitter of
    each image); False: every pseudo-video is the whole image as drawn (the ablation)."""
    pseudo_frames: int = 0
    """Frames per pseudo-video: 0 = the model's clip length; 1 = single images with the
    temporal layers bypassed (the Gen-1 image step the model was trained with), which costs a
    fraction of a video step for the same appearance signal, since a pseudo-video is static."""
    decoder_steps: int = 0
    """Steps fine-tuning the decoder's top on the images (`decoder.py`): 0 = the model's own
    decoder; for characters whose colours that decoder cannot draw."""
    decoder_lr: float = 1e-4
    decoder_batch: int = 8
    log_every: int = 10
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConceptError(f"method {self.method!r} is not one of {METHODS}")
        if self.steps < 0 or self.batch < 1 or self.buckets < 1:
            raise ConceptError(
                f"steps ({self.steps}) must be >= 0, batch ({self.batch}) and buckets "
                f"({self.buckets}) >= 1"
            )
        if self.lora_targets not in LORA_TARGETS:
            raise ConceptError(
                f"lora_targets {self.lora_targets!r} is not one of {tuple(LORA_TARGETS)}"
            )
        if not 0 < self.crop_scale <= 1:
            raise ConceptError(f"crop_scale {self.crop_scale} must be in (0, 1]")
        if not 1 <= self.lora_max_t <= NUM_TRAIN_TIMESTEPS:
            raise ConceptError(
                f"lora_max_t {self.lora_max_t} must be a timestep in 1..{NUM_TRAIN_TIMESTEPS}"
            )
        if self.decoder_steps < 0 or self.decoder_batch < 1 or self.decoder_lr <= 0:
            raise ConceptError(
                f"decoder_steps ({self.decoder_steps}) must be >= 0, decoder_batch "
                f"({self.decoder_batch}) >= 1 and decoder_lr ({self.decoder_lr}) > 0"
            )
        if self.pseudo_frames < 0:
            raise ConceptError(f"pseudo_frames {self.pseudo_frames} must be >= 0 (0: the model's)")
        if not 0 <= self.zoom_out < 1:
            raise ConceptError(f"zoom_out {self.zoom_out} must be in [0, 1)")

    @property
    def table_buckets(self) -> int:
        """Rows of the table this method trains: 1 for none / ti, `buckets` for TimeInv."""
        return self.buckets if self.method.startswith("timeinv") else 1

    @property
    def uses_lora(self) -> bool:
        return self.method.endswith("_lora")


def check_name(name: str) -> str:
    """A concept name usable as `<name>` in prompts and as a folder name."""
    if not CONCEPT_PATTERN.fullmatch(f"<{name}>"):
        raise ConceptError(
            f"concept name {name!r}: use letters, digits, '_' or '-' (prompts write it <{name}>)"
        )
    return name
