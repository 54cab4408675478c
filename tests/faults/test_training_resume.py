"""A training run stopped dead after a checkpoint and resumed ends with the weights of a run that
was never stopped, bit for bit (t2v trainer, tiny config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from story.tasks.training.train_t2v import TrainConfig, Trainer
from tests.faults.conftest import Recorder
from tests.models.t2v_stubs import HashTextEncoder

TINY = dict(
    frames=2,
    height=16,
    width=16,
    batch=1,
    vae_channels=(8, 16, 16),
    unet_channels=(16, 32),
    unet_heads=2,
    encoder_hidden=8,
    checkpoint_every=1,
    threads=1,
    device="cpu",
)
STEPS, KILL_AT = 4, 2


class Killed(Exception):
    """Stands for SIGKILL right after a checkpoint: nothing after it runs."""


class KilledTrainer(Trainer):
    """The trainer, stopped dead once its step-KILL_AT checkpoint is on disk."""

    def checkpoint(self) -> None:
        super().checkpoint()
        if self.step == KILL_AT:
            raise Killed


def _state(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
    flat = {f"weights.{k}": v for k, v in state["weights"].items()}
    flat.update({f"ema.{k}": v for k, v in state["ema"].items() if torch.is_tensor(v)})
    for i, shadow in enumerate(state["ema"].get("shadow_params", [])):
        flat[f"ema.shadow.{i}"] = shadow
    return flat


def _config(stage: str, out: Path, init: Path | None = None) -> TrainConfig:
    return TrainConfig(
        stage=stage,
        out=str(out),
        init=str(init) if init else None,
        steps=STEPS,
        caption_dropout=0.5,
        **TINY,
    )


@pytest.mark.slow
def test_killed_and_resumed_training_gives_the_unbroken_weights(
    tmp_path: Path, fault: Recorder
) -> None:
    text = HashTextEncoder(16)
    vae = tmp_path / "vae"
    Trainer(TrainConfig(stage="vae", out=str(vae), steps=1, **TINY)).run(log=str)
    init = vae / "model"

    unbroken = tmp_path / "unbroken"
    Trainer(_config("base", unbroken, init), text_encoder=text).run(log=str)

    broken = tmp_path / "broken"
    with pytest.raises(Killed):
        KilledTrainer(_config("base", broken, init), text_encoder=text).run(log=str)
    resumed = Trainer(_config("base", broken, init), text_encoder=text)
    assert resumed.step == KILL_AT
    assert resumed.run(log=str) == STEPS

    expected, observed = _state(unbroken), _state(broken)
    differ = sorted(k for k in expected if not torch.equal(expected[k], observed.get(k)))
    fault(
        "training: t2v run killed after step 2 of 4, resumed",
        "bit-identical weights and EMA to an unbroken run",
        "bit-identical weights and EMA to an unbroken run"
        if not differ and expected.keys() == observed.keys()
        else f"{len(differ)} of {len(expected)} tensors differ, first {differ[:3]}",
    )
    assert expected.keys() == observed.keys()
    assert differ == []
