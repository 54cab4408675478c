"""The concept training methods and defaults, in one torch-free place (trainer, CLI, benchmark)."""

from __future__ import annotations

from typing import Any

METHODS: tuple[str, ...] = ("none", "ti", "ti_lora", "timeinv", "timeinv_lora")

# Chosen on validation shots for the bundled tiny model (docs/concepts.md).
DEFAULT_STEPS = 200
DEFAULT_LR_TABLE = 5e-4
DEFAULT_LR_LORA = 5e-5
DEFAULT_REG_CLIPS = 8
"""Regularisation clips a LoRA trains with when a clip library is at hand (flow train_concept)."""
DEFAULT_DECODER_STEPS = 200
"""Decoder-top steps of a `METHOD+decoder` row in `story eval concepts` (chosen on validation
shots for zib on t2v-64, docs/concepts.md)."""

MEASURED_RECIPES: dict[str, dict[str, Any]] = {
    # t2v-64f4-v3 (weights 9b72f3419f0bdcc1): chosen on 16 validation shots of zib, a look no
    # caption names (docs/concepts.md, "The arms on v3"): TimeInv + LoRA with the concept's own
    # decoder top drew zib in 14 of 16 shots, TimeInv + decoder top in 3 of 16, the words 0.
    "9b72f3419f0bdcc1": {
        "method": "timeinv_lora",
        "steps": 3000,
        "lr_table": 5e-3,
        "lr_lora": 1e-3,
        "pseudo_frames": 1,
        "decoder_steps": 400,
        "decoder_lr": 4e-4,
    },
}
"""The concept recipe measured for a synthesis checkpoint, keyed by its weights' fingerprint
(`model_fingerprint`, the `base_checkpoint` a pack records): `story concept train` uses it for
every setting not given, so a TD gets the measured recipe on the model it was measured on, and
the general defaults above on any other."""


def recipe_for(fingerprint: str) -> dict[str, Any]:
    """The measured recipe of the checkpoint with these weights, or {} (the general defaults)."""
    return dict(MEASURED_RECIPES.get(fingerprint, {}))
