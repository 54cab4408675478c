"""The concept training methods and defaults, in one torch-free place (trainer, CLI, benchmark)."""

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
