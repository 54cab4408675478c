"""The trainer: every stage runs on a tiny config, checkpoints in diffusers layout, and resumes."""

from __future__ import annotations

import json

import pytest
import torch

from story.models.t2v import StructureT2V, random_tiny
from story.tasks.errors import StoryError
from story.tasks.training.train_t2v import (
    TrainConfig,
    Trainer,
    export_checkpoint,
    main,
    parse_args,
)
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


def joint_config(tmp_path, name: str, **settings) -> TrainConfig:
    """A joint stage in `tmp_path / name`, by default from a tiny autoencoder trained for one
    step (once per test)."""
    vae = tmp_path / "vae"
    if not (vae / "model").is_dir():
        Trainer(TrainConfig(stage="vae", out=str(vae), steps=1, **TINY)).run(log=str)
    settings.setdefault("init", str(vae / "model"))
    return TrainConfig(stage="joint", out=str(tmp_path / name), **{**TINY, **settings})


def _steps(folder) -> list[int]:
    return [
        json.loads(line)["step"] for line in (folder / "train_log.jsonl").read_text().splitlines()
    ]


def test_stages_chain_and_resume_continues_the_step_count(tmp_path) -> None:
    text = HashTextEncoder(16)
    Trainer(TrainConfig(stage="vae", out=str(tmp_path / "vae"), steps=2, **TINY)).run(log=str)
    assert (tmp_path / "vae" / "model" / "latent_stats.json").is_file()

    base = dict(stage="base", out=str(tmp_path / "base"), init=str(tmp_path / "vae" / "model"))
    first = Trainer(TrainConfig(steps=2, **base, **TINY), text_encoder=text)
    assert first.run(log=str) == 2
    resumed = Trainer(TrainConfig(steps=3, **base, **TINY), text_encoder=text)
    assert resumed.step == 2
    assert resumed.run(log=str) == 3
    assert _steps(tmp_path / "base") == [2, 3]

    model = StructureT2V.from_pretrained(tmp_path / "base" / "model", device="cpu")
    assert model.unet.config.cross_attention_dim == 16

    frozen_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    stage2 = dict(
        stage="structure", out=str(tmp_path / "s2"), init=str(tmp_path / "base" / "model")
    )
    Trainer(TrainConfig(steps=2, **stage2, **TINY), text_encoder=text).run(log=str)
    after = StructureT2V.from_pretrained(tmp_path / "s2" / "model", device="cpu")
    assert all(torch.equal(frozen_before[k], v) for k, v in after.unet.state_dict().items())
    moved = [p.abs().sum() > 0 for p in after.structure_encoder.projections.parameters()]
    assert any(moved)

    shipped = export_checkpoint(
        tmp_path / "s2" / "model", tmp_path / "ship", tmp_path / "vae" / "model"
    )
    unet_file = "unet/diffusion_pytorch_model.safetensors"
    full = (tmp_path / "s2" / "model" / unet_file).stat().st_size
    assert (shipped / unet_file).stat().st_size < 0.6 * full
    reloaded = StructureT2V.from_pretrained(shipped, device="cpu")
    assert next(reloaded.unet.parameters()).dtype == torch.float32


def test_bad_configurations_are_named(tmp_path) -> None:
    with pytest.raises(StoryError, match="stage"):
        TrainConfig(stage="nope", out=str(tmp_path))
    with pytest.raises(StoryError, match="--init"):
        TrainConfig(stage="structure", out=str(tmp_path))
    cfg = parse_args(
        ["--stage", "joint", "--init", "m", "--out", "o", "--unet-channels", "8", "16"]
    )
    assert cfg.unet_channels == (8, 16) and cfg.stage == "joint"
    with pytest.raises(StoryError, match="noise_warp"):
        parse_args(["--stage", "joint", "--init", "m", "--out", "o", "--noise-warp", "1"])
    with pytest.raises(StoryError, match="noise_warp"):
        parse_args(["--stage", "joint", "--init", "m", "--out", "o", "--probe-noise-warp", "2"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "joint", "--init", "m", "--out", "o", "--trained-layers", "x"])


def test_joint_image_video_steps_with_detail_levels_and_object_weights(tmp_path) -> None:
    text = HashTextEncoder(16)
    cfg = joint_config(
        tmp_path,
        "joint",
        steps=4,
        image_ratio=0.5,
        image_batch=3,
        detail_levels=3,
        object_loss_weight=4.0,
        noise_warp=0.8,  # video steps on the sampler's warped noise
    )
    trainer = Trainer(cfg, text_encoder=text)
    kinds = [trainer.next_batch().video.shape[2] for _ in range(12)]
    assert set(kinds) == {1, TINY["frames"]}
    image = next(b for b in iter(trainer.next_batch, None) if b.video.shape[2] == 1)
    assert image.video.shape[0] == 3 and len(image.captions) == 3
    assert trainer.run(log=str) == 4
    model = StructureT2V.from_pretrained(tmp_path / "joint" / "model", device="cpu")
    assert model.structure_encoder.config.detail_levels == 3


def test_a_temporal_only_run_leaves_every_per_frame_layer_as_it_was(tmp_path) -> None:
    from story.models.temporal import temporal_modules

    text = HashTextEncoder(16)
    Trainer(joint_config(tmp_path, "j", steps=1), text_encoder=text).run(log=str)
    cfg = joint_config(
        tmp_path,
        "t",
        steps=3,
        structure_dropout=0.5,
        trained_layers="temporal",
        temporal_loss_weight=1.0,
        lr=1e-2,
        init=str(tmp_path / "j" / "model"),
    )
    before = StructureT2V.from_pretrained(tmp_path / "j" / "model", device="cpu")
    Trainer(cfg, text_encoder=text).run(log=str)
    after = StructureT2V.from_pretrained(tmp_path / "t" / "model", device="cpu")
    layers = {id(module) for module in temporal_modules(after.unet)}
    temporal = {
        f"{name}.{key}"
        for name, module in after.unet.named_modules()
        if id(module) in layers
        for key in module.state_dict()
    }
    old, new = before.unet.state_dict(), after.unet.state_dict()
    moved = {k for k in new if not torch.equal(old[k], new[k])}
    assert moved and moved <= temporal
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            before.structure_encoder.state_dict().values(),
            after.structure_encoder.state_dict().values(),
            strict=True,
        )
    )
    with pytest.raises(StoryError, match="image-ratio"):
        joint_config(tmp_path, "x", trained_layers="temporal", image_ratio=0.25)


def test_a_warm_start_carries_the_unet_over_to_a_new_autoencoder(tmp_path) -> None:
    text = HashTextEncoder(16)
    Trainer(TrainConfig(stage="vae", out=str(tmp_path / "vae"), steps=1, **TINY)).run(log=str)
    base = dict(stage="base", out=str(tmp_path / "base"), init=str(tmp_path / "vae" / "model"))
    Trainer(TrainConfig(steps=1, **base, **TINY), text_encoder=text).run(log=str)
    # A less compressed autoencoder (f2 instead of f4): twice the latent size per side.
    f2 = {**TINY, "vae_channels": (8, 16)}
    Trainer(TrainConfig(stage="vae", out=str(tmp_path / "vae2"), steps=1, **f2)).run(log=str)
    warm = TrainConfig(
        stage="joint",
        out=str(tmp_path / "warm"),
        init=str(tmp_path / "vae2" / "model"),
        warm_start=str(tmp_path / "base" / "model"),
        steps=1,
        **f2,
    )
    trainer = Trainer(warm, text_encoder=text)
    source = StructureT2V.from_pretrained(tmp_path / "base" / "model", device="cpu")
    theirs, mine = source.unet.state_dict(), trainer.model.unet.state_dict()
    assert trainer.model.unet.config.sample_size == 2 * source.unet.config.sample_size
    assert all(torch.equal(theirs[k], mine[k].cpu()) for k in theirs)
    record = json.loads((tmp_path / "warm" / "warm_start.json").read_text())
    assert record["unet"]["left"] == [] and record["unet"]["copied"] == len(theirs)
    # The structure encoder's stem has one stride-2 layer fewer: that layer is not in the new one.
    assert record["structure_encoder"]["copied"] > 0
    assert len(source.structure_encoder.stem) > len(trainer.model.structure_encoder.stem)
    assert trainer.run(log=str) == 1
    # Resuming does not copy again over the trained weights.
    (tmp_path / "warm" / "warm_start.json").unlink()
    assert Trainer(warm, text_encoder=text).step == 1
    assert not (tmp_path / "warm" / "warm_start.json").exists()


def test_object_weights_mark_the_cells_an_object_touches() -> None:
    from story.models.losses import object_weights

    objects = torch.zeros(1, 2, 8, 8)
    objects[0, 1, 5, 6] = 1
    weights = object_weights(objects, 4, 3.0)
    assert weights.shape == (1, 1, 2, 2, 2)
    assert weights[0, 0, 1, 1, 1] == 4.0
    assert weights.sum() == 8 + 3.0


def test_the_smoother_stage_trains_only_the_smoother_and_resumes(tmp_path) -> None:
    text = HashTextEncoder(16)
    random_tiny(text_dim=16, frames=TINY["frames"]).save_pretrained(tmp_path / "base")
    bundle = StructureT2V.from_pretrained(tmp_path / "base", device="cpu")

    run = dict(
        stage="smoother",
        out=str(tmp_path / "sm"),
        init=str(tmp_path / "base"),
        latent_noise=0.2,
        temporal_loss_weight=1.0,
        smoother_hidden=8,
        lr=1e-2,
        warmup=1,
    )
    first = Trainer(TrainConfig(steps=2, **run, **TINY), text_encoder=text)
    assert first.run(log=str) == 2
    resumed = Trainer(TrainConfig(steps=3, **run, **TINY), text_encoder=text)
    assert resumed.step == 2 and resumed.run(log=str) == 3

    after = StructureT2V.from_pretrained(tmp_path / "sm" / "model", device="cpu")
    assert after.latent_smoother is not None
    assert any(p.abs().sum() > 0 for p in after.latent_smoother.net[-1].parameters())
    for name in ("unet", "vae", "structure_encoder"):
        old, new = getattr(bundle, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(old[k], v) for k, v in new.items()), name
    with pytest.raises(StoryError, match="smoother.*--init"):
        TrainConfig(stage="smoother", out=str(tmp_path / "x"))

    guided = dict(run, out=str(tmp_path / "guided"), smoother_guided=True, structure_dropout=0.0)
    assert Trainer(TrainConfig(steps=1, **guided, **TINY), text_encoder=text).run(log=str) == 1
    smoother = StructureT2V.from_pretrained(tmp_path / "guided" / "model").latent_smoother
    assert smoother is not None and smoother.config.guided
    assert smoother.net[0].in_channels == 3 * bundle.vae.config.latent_channels + 1


def test_the_probe_scores_a_model_folder_as_the_training_curve_scored_it(tmp_path, capsys) -> None:
    """`train_t2v probe --model FOLDER` reads any model with the curve's probe, so a
    continuation's curve can be set against the model it started from."""
    Trainer(TrainConfig(stage="vae", out=str(tmp_path / "vae"), steps=1, **TINY)).run(log=str)
    probe = dict(eval_every=1, eval_scenes=2, eval_steps=2)
    cfg = TrainConfig(
        stage="joint",
        out=str(tmp_path / "joint"),
        init=str(tmp_path / "vae" / "model"),
        steps=1,
        **probe,
        **TINY,
    )
    Trainer(cfg).run(log=str)
    curve = json.loads((tmp_path / "joint" / "curve.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    main(["probe", "--model", str(tmp_path / "joint" / "model"), "--scenes", "2", "--steps", "2"])
    row = json.loads(capsys.readouterr().out)
    assert set(row) >= {"guided", "text_only"}
    assert row["guided"] == curve["guided"] and row["text_only"] == curve["text_only"]
    folder = str(tmp_path / "joint" / "model")
    main(["probe", "--model", folder, "--scenes", "2", "--steps", "2", "--noise-warp", "0.8"])
    warped = json.loads(capsys.readouterr().out)
    assert warped["noise_warp"] == 0.8
    assert warped["guided"] != curve["guided"]  # the production sampling, not the curve's
