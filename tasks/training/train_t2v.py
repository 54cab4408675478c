"""Train the structure-guided text-to-video model (the paper's two-stage recipe), resumably.

Stages:
- `vae`: the per-frame `AutoencoderKL` on clip frames (L1 + MSE, object pixels weighted up, a
  small KL term); with `--init` only the decoder trains, so a trained model's latents stay valid
  (`latent_noise` and `temporal_loss_weight` then teach it not to pass a latent's frame-to-frame
  noise on as flicker).
- `base`: stage 1, the video U-Net on text alone (v-prediction, min-SNR weighting, 10% caption
  dropout for classifier-free guidance).
- `structure`: stage 2, the StructureEncoder with the base frozen; its features are added to the
  U-Net down blocks.
- `joint`: U-Net and encoder together, the guide dropped for a share of clips so the text-only
  path keeps training (an option when stage 2 alone has too little time).
- `smoother`: the latent smoother of a trained bundle (`--init`; `models/latent_smoother.py`),
  everything else frozen: real clips' latents with `latent_noise` per frame in, the clean
  latents out (`temporal_loss_weight` weighs their frame-to-frame change).

Gen-1's recipe is available in every U-Net stage: `image_ratio` of the steps are image steps
(single frames, temporal layers bypassed, everything else shared), which teach text ->
appearance at a fraction of a video step's cost; `detail_levels` trains the structure encoder on
the guide blurred to a random level, so structure fidelity becomes a sampling knob;
`object_loss_weight` weighs the latent cells that cover objects up, since small objects carry
most of what a prompt asks for; `temporal_loss_weight` adds the squared change of the
prediction's error from one frame to the next (video steps), so the error the model cannot
avoid is pushed to be the same in neighbouring frames, not to flicker.

Each stage writes `<out>/state.pt` (weights, EMA, optimiser, data-stream state, step) and the EMA
model in diffusers layout (`<out>/model/`) every `checkpoint_every` steps; running the same command
again resumes from there. `--eval-every` scores the EMA model on fixed held-out miniature-world
scenes and appends to `<out>/curve.jsonl`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from story.models.latent_smoother import LatentSmoother, SmootherConfig
from story.models.losses import autoencoder_loss, diffusion_loss, object_weights, smoother_loss
from story.models.t2v import StructureT2V, T2VConfig
from story.models.temporal import temporal_modules
from story.models.unet import tiny_unet_config
from story.models.vae import build_vae, downsample_factor, load_vae, tiny_vae_config
from story.tasks.atomic import atomic_path
from story.tasks.errors import StoryError
from story.tasks.training.t2v_data import (
    ClipBatch,
    ManifestSource,
    MiniworldSource,
    images_from,
)
from story.tasks.training.train_config import TrainConfig, parse_args
from story.tasks.training.warm_start import warm_start

STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "base": ("unet",),
    "structure": ("structure_encoder",),
    "joint": ("unet", "structure_encoder"),
    "smoother": ("latent_smoother",),
}
"""The bundle parts each U-Net-side stage trains (the rest frozen); the order is the order of the
weights in a run's state.pt."""
IMAGES_PER_CLIP = 4
STATE_FILE = "state.pt"
MODEL_DIR = "model"
CURVE_FILE = "curve.jsonl"


def make_source(cfg: TrainConfig) -> MiniworldSource | ManifestSource:
    """The configured clip stream: a caption manifest if given, else the miniature world."""
    if cfg.manifest:
        return ManifestSource(
            cfg.manifest,
            cfg.frames,
            cfg.height,
            cfg.width,
            cfg.depth_model,
            cfg.checkpoints,
            seed=cfg.seed,
        )
    recolour = cfg.recolour if cfg.stage == "vae" else 0.0
    return MiniworldSource(cfg.frames, cfg.height, cfg.width, seed=cfg.seed, recolour=recolour)


class TextCache:
    """Frozen text states per caption, computed once: captions repeat across the stream."""

    def __init__(self, model: StructureT2V, limit: int = 200_000) -> None:
        self.model = model
        self.limit = limit
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(c for c in captions if c not in self.cache))
        if missing:
            if len(self.cache) + len(missing) > self.limit:
                self.cache.clear()
            states = self.model.encode_prompts(missing).cpu()
            self.cache.update(zip(missing, states, strict=True))
        return torch.stack([self.cache[c] for c in captions]).to(self.model.device)


def _drop_captions(captions: list[str], p: float, rng: np.random.Generator) -> list[str]:
    return ["" if rng.random() < p else c for c in captions]


class Trainer:
    """Runs one stage: builds or loads the model, trains, checkpoints, evaluates, resumes."""

    def __init__(self, cfg: TrainConfig, text_encoder=None) -> None:
        """`text_encoder` replaces the named one (`cfg.text_encoder`), e.g. one already loaded."""
        from story.models.device import pick_device

        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.device = pick_device(cfg.device)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.source = make_source(cfg)
        self.step = 0
        self.elapsed = 0.0
        if cfg.stage == "vae":
            if cfg.init:
                self.vae = load_vae(cfg.init)
            else:
                self.vae = build_vae(
                    tiny_vae_config(cfg.vae_channels, cfg.latent_channels, sample_size=cfg.height)
                )
            self.vae.to(self.device)
            self.trained = self._vae_trained(self.vae)
        else:
            if text_encoder is None:
                from story.models.text_encoder import load_text_encoder

                text_encoder = load_text_encoder(cfg.text_encoder, device="cpu")
            self.model = self._init_model(text_encoder.dim).to(self.device)
            self.model.set_text_encoder(text_encoder)
            self.text = TextCache(self.model)
            self.model.vae.requires_grad_(False)
            if cfg.stage == "smoother" and self.model.latent_smoother is None:
                self.model.latent_smoother = LatentSmoother(
                    SmootherConfig(
                        channels=self.model.vae.config.latent_channels,
                        hidden=cfg.smoother_hidden,
                        layers=cfg.smoother_layers,
                        guided=cfg.smoother_guided,
                    )
                ).to(self.device)
            for name in ("unet", "structure_encoder", "latent_smoother"):
                part = getattr(self.model, name)
                if part is not None:
                    part.requires_grad_(name in STAGE_MODULES[cfg.stage])
            if cfg.trained_layers == "temporal":
                for part in (self.model.unet, self.model.structure_encoder):
                    if part is not None:
                        part.requires_grad_(False)
                for module in temporal_modules(self.model.unet):
                    module.requires_grad_(True)
            self.trained = self._stage_modules(self.model)
        params = [p for p in self.trained.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / max(1, cfg.warmup))
        )
        self.ema = EMAModel(self.trained.parameters(), decay=cfg.ema_decay)
        self._resume()

    def _vae_trained(self, vae: torch.nn.Module) -> torch.nn.Module:
        """All of a new VAE; only the decoder of a given one, so its latent space stays put."""
        if not self.cfg.init:
            return vae
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        return torch.nn.ModuleList([vae.decoder, vae.post_quant_conv])

    def _stage_modules(self, model: StructureT2V) -> torch.nn.ModuleList:
        """The parts of a bundle this (non-VAE) stage trains, in `STAGE_MODULES` order."""
        return torch.nn.ModuleList(getattr(model, name) for name in STAGE_MODULES[self.cfg.stage])

    def _init_model(self, text_dim: int) -> StructureT2V:
        cfg = self.cfg
        init = Path(cfg.init)
        if (init / "model_index.json").is_file():
            return StructureT2V.from_pretrained(init, device="cpu").train()
        vae = load_vae(init)
        stats = json.loads((init / "latent_stats.json").read_text())
        config = T2VConfig(
            frames=cfg.frames,
            height=cfg.height,
            width=cfg.width,
            vae_scaling=stats["scaling"],
            vae_shift=stats["shift"],
            text_encoder=cfg.text_encoder,
        )
        f = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_config = tiny_unet_config(
            cfg.unet_channels,
            cross_attention_dim=text_dim,
            latent_channels=vae.config.latent_channels,
            sample_size=cfg.height // f,
            heads=cfg.unet_heads,
        )
        model = StructureT2V.from_configs(
            vae.config,
            unet_config,
            config,
            encoder_hidden=cfg.encoder_hidden,
            vae=vae,
            detail_levels=cfg.detail_levels,
        )
        if cfg.warm_start and not (self.out / STATE_FILE).is_file():
            warm_start(model, cfg.warm_start, self.out)
        return model

    def _resume(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            (self.out / "train_config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["stage"] != self.cfg.stage:
            raise StoryError(f"{path}: holds stage {state['stage']!r}, not {self.cfg.stage!r}")
        self.trained.load_state_dict(state["weights"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "lr_schedule" in state:
            self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.source.load_state(state["source"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.elapsed = state.get("elapsed", 0.0)

    def checkpoint(self) -> None:
        """Write the resumable state and the EMA model (diffusers layout)."""
        state = {
            "stage": self.cfg.stage,
            "step": self.step,
            "elapsed": self.elapsed,
            "weights": self.trained.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "source": self.source.state(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(self.out / STATE_FILE) as partial:
            torch.save(state, partial)
        self.export(self.out / MODEL_DIR)

    def ema_copy(self) -> torch.nn.Module:
        """The trained object with EMA weights (the VAE, or the whole bundle)."""
        if self.cfg.stage == "vae":
            vae = copy.deepcopy(self.vae)
            self.ema.copy_to(self._vae_trained(vae).parameters())
            return vae.eval()
        model = copy.deepcopy(self.model)
        self.ema.copy_to(self._stage_modules(model).parameters())
        model.set_text_encoder(self.model.text_encoder())
        return model.eval()

    def export(self, folder: Path) -> None:
        trained = self.ema_copy()
        if self.cfg.stage == "vae":
            trained.save_pretrained(folder, safe_serialization=True)
            stats = Path(self.cfg.init or "") / "latent_stats.json"
            if self.cfg.init and stats.is_file():
                (folder / "latent_stats.json").write_text(stats.read_text())
            else:
                (folder / "latent_stats.json").write_text(json.dumps(self.latent_stats(trained)))
        else:
            trained.save_pretrained(folder)

    @torch.no_grad()
    def latent_stats(self, vae: torch.nn.Module, clips: int = 32) -> dict[str, float]:
        """Shift and scale that bring the VAE latents to zero mean, unit variance."""
        batch = MiniworldSource(self.cfg.frames, self.cfg.height, self.cfg.width, seed=12345)
        if self.cfg.manifest:
            batch = self.source
        video = batch.batch(clips).video.to(self.device)
        flat = video.permute(0, 2, 1, 3, 4).reshape(-1, 3, *video.shape[-2:])
        z = vae.encode(flat).latent_dist.sample()
        return {"shift": float(z.mean()), "scaling": float(1.0 / z.std())}

    def loss(self, batch: ClipBatch) -> torch.Tensor:
        cfg = self.cfg
        video = batch.video.to(self.device)
        if cfg.stage == "vae":
            return autoencoder_loss(
                self.vae,
                video,
                batch.objects.to(self.device) if batch.objects is not None else None,
                object_weight=cfg.object_weight,
                edge_weight=cfg.edge_weight,
                colour_weight=cfg.colour_weight,
                colour_pool=cfg.colour_pool,
                kl_weight=cfg.kl_weight,
                latent_noise=cfg.latent_noise,
                temporal_weight=cfg.temporal_loss_weight,
            )
        if cfg.stage == "smoother":
            guide = None
            if cfg.smoother_guided and self.rng.random() >= cfg.structure_dropout:
                guide = batch.structure
            return smoother_loss(
                self.model,
                video,
                cfg.latent_noise,
                temporal_weight=cfg.temporal_loss_weight,
                structure=guide,
            )
        with torch.no_grad():
            latents = self.model.encode_video(video)
        text = self.text(_drop_captions(batch.captions, cfg.caption_dropout, self.rng))
        structure = None
        if cfg.stage == "structure" or (
            cfg.stage == "joint" and self.rng.random() >= cfg.structure_dropout
        ):
            structure = batch.structure
        weights = None
        if cfg.object_loss_weight and batch.objects is not None:
            factor = downsample_factor(self.model.vae)
            weights = object_weights(batch.objects, factor, cfg.object_loss_weight)
            weights = weights.to(self.device)
        detail = int(self.rng.integers(0, cfg.detail_levels)) if cfg.detail_levels else 0
        return diffusion_loss(
            self.model,
            latents,
            text,
            structure,
            cfg.min_snr_gamma,
            cubic=cfg.cubic_timesteps,
            weights=weights,
            detail=detail,
            temporal=video.shape[2] > 1,
            temporal_weight=cfg.temporal_loss_weight,
            temporal_units=cfg.temporal_loss_units,
            noise_warp=cfg.noise_warp,
        )

    def next_batch(self) -> ClipBatch:
        """A video batch, or for `image_ratio` of the U-Net steps an image batch (single
        frames, four from each clip)."""
        cfg = self.cfg
        if cfg.stage == "vae" or self.rng.random() >= cfg.image_ratio:
            return self.source.batch(cfg.batch)
        images = cfg.image_batch or 4 * cfg.batch
        clips = self.source.batch(-(-images // IMAGES_PER_CLIP))
        return images_from(clips, IMAGES_PER_CLIP, self.rng, limit=images)

    def run(self, log=print) -> int:
        """Train to `steps` (or `max_minutes` of this invocation); returns the final step."""
        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        self.trained.train()
        started = time.monotonic()
        window: list[float] = []
        log_path = self.out / "train_log.jsonl"
        while self.step < cfg.steps:
            if cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60:
                break
            tick = time.monotonic()
            batch = self.next_batch()
            data_time = time.monotonic() - tick
            loss = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trained.parameters(), 1.0)
            self.optimizer.step()
            self.lr_schedule.step()
            self.step += 1
            self.ema.step(self.trained.parameters())
            step_time = time.monotonic() - tick
            self.elapsed += step_time
            window.append(float(loss.detach()))
            if self.step % 25 == 0 or self.step == cfg.steps:
                row = {
                    "step": self.step,
                    "loss": float(np.mean(window)),
                    "s_per_step": step_time,
                    "data_s": data_time,
                    "elapsed_min": self.elapsed / 60,
                }
                window = []
                log(json.dumps(row))
                with log_path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
            if self.step % cfg.checkpoint_every == 0:
                self.checkpoint()
            if (
                cfg.eval_every
                and cfg.stage not in ("vae", "smoother")
                and self.step % cfg.eval_every == 0
            ):
                self.evaluate(log)
        self.checkpoint()
        if cfg.eval_every and cfg.stage not in ("vae", "smoother") and self.step % cfg.eval_every:
            self.evaluate(log)
        return self.step

    def evaluate(self, log=print) -> dict:
        """Score the EMA model on the held-out scenes and append to the curve."""
        from story.tasks.training.curve import probe_row

        tick = time.monotonic()
        model = self.ema_copy()
        guided_modes = (True, False) if self.cfg.stage != "base" else (False,)
        row: dict = {"step": self.step, "stage": self.cfg.stage, "train_min": self.elapsed / 60}
        cfg = self.cfg
        # A run trained on warped noise is probed sampling from it, as the product samples,
        # unless the run names the probe's own.
        warp = cfg.noise_warp if cfg.probe_noise_warp is None else cfg.probe_noise_warp
        warp = warp or None
        row.update(
            probe_row(model, cfg.eval_scenes, cfg.eval_steps, cfg.guidance, guided_modes, warp)
        )
        row["eval_s"] = time.monotonic() - tick
        snapshot = self.out / "snapshots" / f"step-{self.step:06d}"
        model.save_pretrained(snapshot, half=True)
        if cfg.production_plots and cfg.production_reference:
            from story.tasks.training.production_probe import production_probe

            tick = time.monotonic()
            row["production"] = production_probe(
                snapshot, cfg.production_plots, cfg.production_reference, cfg.threads, log
            )
            row["production_s"] = time.monotonic() - tick
        with (self.out / CURVE_FILE).open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        log(json.dumps(row))
        return row


def export_checkpoint(
    model_folder: str | Path,
    out: str | Path,
    vae_folder: str | Path | None = None,
    half: bool = True,
) -> Path:
    """Write a trained bundle for shipping: optionally with a fine-tuned decoder, fp16 weights."""
    model = StructureT2V.from_pretrained(model_folder, device="cpu")
    if vae_folder is not None:
        vae = load_vae(vae_folder)
        if vae.config.latent_channels != model.vae.config.latent_channels:
            raise StoryError(f"{vae_folder}: VAE latent channels differ from {model_folder}'s")
        model.vae = vae
    return model.save_pretrained(out, half=half)


def probe(args: list[str]) -> dict:
    """The training curve's probe on any model folder (a shipped checkpoint, a snapshot), so a
    continuation's curve can be read against the model it started from: the same held-out
    scenes, seed and sampling as `Trainer.evaluate`."""
    from story.tasks.training.curve import probe_row

    parser = argparse.ArgumentParser(description="Score a model with the training curve's probe.")
    parser.add_argument("probe")
    parser.add_argument("--model", required=True, help="model bundle folder")
    parser.add_argument("--scenes", type=int, default=TrainConfig.eval_scenes)
    parser.add_argument("--steps", type=int, default=TrainConfig.eval_steps)
    parser.add_argument("--guidance", type=float, default=TrainConfig.guidance)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (a GPU when present)")
    parser.add_argument(
        "--noise-warp",
        type=float,
        default=None,
        help="sample with this noise warp (the product's is 0.8); default: as the curve samples",
    )
    ns = parser.parse_args(args)
    torch.set_num_threads(ns.threads)
    model = StructureT2V.from_pretrained(ns.model, device=ns.device)
    row: dict = {"model": str(ns.model), "scenes": ns.scenes, "steps": ns.steps}
    if ns.noise_warp is not None:
        row["noise_warp"] = ns.noise_warp
    scores = probe_row(model, ns.scenes, ns.steps, ns.guidance, noise_warp=ns.noise_warp)
    return {**row, **scores}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["export"]:
        parser = argparse.ArgumentParser(description="Export a trained model for shipping.")
        parser.add_argument("export")
        parser.add_argument("--model", required=True, help="trained bundle folder")
        parser.add_argument("--vae", help="VAE folder whose decoder replaces the bundle's")
        parser.add_argument("--out", required=True)
        parser.add_argument("--fp32", action="store_true", help="keep fp32 weights")
        ns = parser.parse_args(args)
        print(export_checkpoint(ns.model, ns.out, ns.vae, half=not ns.fp32))
        return
    if args[:1] == ["probe"]:
        print(json.dumps(probe(args)))
        return
    cfg = parse_args(args)
    trainer = Trainer(cfg)
    trained = trainer.trained
    print(
        json.dumps(
            {
                "stage": cfg.stage,
                "resume_step": trainer.step,
                "trainable_params": sum(p.numel() for p in trained.parameters() if p.requires_grad),
            }
        )
    )
    trainer.run()


if __name__ == "__main__":
    main()
