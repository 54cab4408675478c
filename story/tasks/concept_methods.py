"""The concept training methods, in one torch-free place (trainer, CLI and benchmark)."""

METHODS: tuple[str, ...] = ("none", "ti", "ti_lora", "timeinv", "timeinv_lora")
