"""The structure-guided text-to-video bundle: VAE + video U-Net + StructureEncoder + text encoder.

A checkpoint is a folder in diffusers layout: `vae/`, `unet/`, `structure_encoder/`, `scheduler/`
(each `config.json` + safetensors) and `model_index.json`, which names the text encoder and holds
the clip geometry and latent scaling. The text encoder itself is not stored: it is resolved by name
(`minilm` is bundled) so the checkpoint stays a few MB.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from torch import nn

from story.models.device import pick_device
from story.models.latent_smoother import LatentSmoother
from story.models.structure_encoder import StructureEncoder
from story.models.temporal import TemporalSwitch, fast_temporal_convs
from story.models.unet import StructureInjection, build_unet, load_unet, video_to_frames
from story.models.vae import build_vae, decode_video, downsample_factor, encode_video, load_vae

INDEX_FILE = "model_index.json"
SUBFOLDERS = ("vae", "unet", "structure_encoder", "scheduler")
OPTIONAL_SUBFOLDERS = ("latent_smoother",)


@dataclass
class T2VConfig:
    """Geometry, conditioning and diffusion settings shared by training and sampling."""

    frames: int = 8
    height: int = 32
    width: int = 32
    structure_channels: int = 1
    text_encoder: str = "minilm"
    max_text_length: int = 32
    prediction_type: str = "v_prediction"
    vae_scaling: float = 1.0
    vae_shift: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> T2VConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_scheduler(prediction_type: str = "v_prediction") -> DDIMScheduler:
    """The DDIM schedule the bundled models are trained with (SD's scaled-linear betas)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
        timestep_spacing="trailing",
    )


class VideoModelBase(nn.Module):
    """What every video backend shares: device, latent shape and prompt encoding.

    Subclasses set `vae`, `unet`, `config` (a T2VConfig) and `_text_encoder`.
    """

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(C, T, h, w) of one clip's latents."""
        f = downsample_factor(self.vae)
        c = self.unet.config.in_channels
        return (c, self.config.frames, self.config.height // f, self.config.width // f)

    def text_encoder(self):
        """The named text encoder, loaded once on first use."""
        if self._text_encoder is None:
            from story.models.text_encoder import load_text_encoder

            self._text_encoder = load_text_encoder(self.config.text_encoder, device="cpu")
        return self._text_encoder

    def set_text_encoder(self, encoder) -> None:
        """Use an already loaded text encoder (shared with retrieval, or a test stub)."""
        self._text_encoder = encoder

    @torch.no_grad()
    def encode_prompts(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, max_text_length, dim) token states; padding rows are zero so batching is exact."""
        encoder = self.text_encoder()
        ids, mask = encoder.tokenize(list(texts), self.config.max_text_length)
        states = encoder.hidden_states(input_ids=ids, attention_mask=mask)
        return pad_states(states, mask, self.config.max_text_length).to(self.device)


class StructureT2V(VideoModelBase):
    """The whole model; `predict` is one denoiser call with optional structure features added."""

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet3DConditionModel,
        structure_encoder: StructureEncoder,
        scheduler: DDIMScheduler,
        config: T2VConfig,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.unet = unet
        self.structure_encoder = structure_encoder
        self.scheduler = scheduler
        self.config = config
        self.injection = StructureInjection(unet)
        self.temporal = TemporalSwitch(unet)
        fast_temporal_convs(unet)
        self.latent_smoother: LatentSmoother | None = None
        self._text_encoder = None
        self.model_id = "unsaved"
        self._check()

    def _check(self) -> None:
        unet_channels = list(self.unet.config.block_out_channels)
        encoder_channels = list(self.structure_encoder.config.block_out_channels)
        if unet_channels != encoder_channels:
            raise ValueError(
                f"structure encoder widths {encoder_channels} do not match U-Net {unet_channels}"
            )
        if self.structure_encoder.config.downsample_factor != downsample_factor(self.vae):
            raise ValueError("structure encoder downsampling must equal the VAE's")
        if self.structure_encoder.config.in_channels != self.config.structure_channels:
            raise ValueError("structure encoder input channels must equal structure_channels")

    @classmethod
    def from_configs(
        cls,
        vae_config: dict,
        unet_config: dict,
        config: T2VConfig,
        encoder_hidden: int = 32,
        vae: AutoencoderKL | None = None,
        detail_levels: int = 0,
    ) -> StructureT2V:
        """A randomly initialised bundle (optionally around an already trained VAE)."""
        vae = vae if vae is not None else build_vae(vae_config)
        unet = build_unet(unet_config)
        encoder = StructureEncoder(
            in_channels=config.structure_channels,
            block_out_channels=tuple(unet_config["block_out_channels"]),
            downsample_factor=downsample_factor(vae),
            hidden_channels=encoder_hidden,
            detail_levels=detail_levels,
        )
        return cls(vae, unet, encoder, default_scheduler(config.prediction_type), config)

    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_states: torch.Tensor,
        features: Sequence[torch.Tensor] | None = None,
        strength: float = 1.0,
        temporal: bool = True,
    ) -> torch.Tensor:
        """The U-Net output for (B, C, T, h, w) latents; `features` from `encode_structure`.

        `temporal=False` bypasses the temporal layers: every frame is denoised as an image.
        """
        with self.injection.active(features, strength), self.temporal.off(not temporal):
            return self.unet(latents, timesteps, encoder_hidden_states=text_states).sample

    def encode_structure(self, structure: torch.Tensor, detail: int = 0) -> list[torch.Tensor]:
        """(B, C, T, H, W) structure in [-1, 1] -> per-level features in the U-Net frame layout;
        `detail` blurs the structure first (0 = as given)."""
        return self.structure_encoder(video_to_frames(structure.to(self.device)), detail)

    def encode_video(
        self, video: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents."""
        z = encode_video(self.vae, video, 1.0, generator)
        return (z - self.config.vae_shift) * self.config.vae_scaling

    def decode_latents(
        self, latents: torch.Tensor, structure: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised latents -> (B, 3, T, H, W) in [-1, 1]; through the latent smoother first
        when the checkpoint has one (`models/latent_smoother.py`; a guided one reads the shot's
        `structure`, (B, C, T, H, W) in [-1, 1], or None for text only)."""
        if self.latent_smoother is not None:
            latents = self.latent_smoother(latents, structure)
        z = latents / self.config.vae_scaling + self.config.vae_shift
        return decode_video(self.vae, z, 1.0)

    def save_pretrained(self, folder: str | Path, half: bool = False) -> Path:
        """Write the diffusers-layout folder; `half` stores fp16 weights (loads back as fp32)."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name in ("vae", "unet", "structure_encoder"):
            module = getattr(self, name)
            if half:
                module = copy.deepcopy(module).half()
            module.save_pretrained(root / name, safe_serialization=True)
        self.scheduler.save_pretrained(root / "scheduler")
        if self.latent_smoother is not None:
            self.latent_smoother.save_pretrained(root / "latent_smoother", half=half)
        elif (root / "latent_smoother").is_dir():  # left by an earlier save: not this model's
            shutil.rmtree(root / "latent_smoother")
        index = {
            "_class_name": type(self).__name__,
            "vae": ["diffusers", "AutoencoderKL"],
            "unet": ["diffusers", "UNet3DConditionModel"],
            "structure_encoder": ["story.models.structure_encoder", "StructureEncoder"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            **(
                {"latent_smoother": ["story.models.latent_smoother", "LatentSmoother"]}
                if self.latent_smoother is not None
                else {}
            ),
            "weights_dtype": "float16" if half else "float32",
            **asdict(self.config),
        }
        (root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        return root

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto") -> StructureT2V:
        """Load a bundle folder written by `save_pretrained`; weights end up fp32 on `device`."""
        root = Path(folder)
        index_path = root / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: missing, not a StructureT2V checkpoint folder")
        missing = [name for name in SUBFOLDERS if not (root / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root}: checkpoint lacks subfolders {missing}")
        try:
            config = T2VConfig.from_dict(json.loads(index_path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{index_path}: unreadable model index: {err}") from err
        vae = load_vae(root / "vae").float()
        unet = load_unet(root / "unet").float()
        encoder = StructureEncoder.from_pretrained(root / "structure_encoder").float()
        scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
        model = cls(vae, unet, encoder, scheduler, config)
        if (root / "latent_smoother").is_dir():
            model.latent_smoother = LatentSmoother.from_pretrained(root / "latent_smoother")
        model.model_id = checkpoint_id(root)
        return model.to(pick_device(device)).eval()


def checkpoint_id(folder: str | Path, length: int = 12) -> str:
    """`<folder name>@<sha256 prefix>` of the index, configs and weights (not of notes such as
    metrics.json): an input of every render id."""
    root = Path(folder)
    files = [root / INDEX_FILE] if (root / INDEX_FILE).is_file() else []
    files += sorted(
        p
        for name in SUBFOLDERS + OPTIONAL_SUBFOLDERS
        for p in (root / name).glob("*")
        if p.is_file() and p.suffix in (".json", ".safetensors")
    )
    if not files:
        raise FileNotFoundError(f"{root}: no model files to identify")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{root.name}@{digest.hexdigest()[:length]}"


def pad_states(states: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """Zero the padded token states and pad/cut to `length` rows: independent of batch padding."""
    states = states * mask.unsqueeze(-1).to(states.dtype)
    if states.shape[1] >= length:
        return states[:, :length]
    pad = states.new_zeros(states.shape[0], length - states.shape[1], states.shape[2])
    return torch.cat([states, pad], dim=1)


def random_tiny(
    text_dim: int = 384, frames: int = 4, size: int = 16, seed: int = 0
) -> StructureT2V:
    """A randomly initialised miniature bundle (f4 VAE, 2-level U-Net) for tests and examples."""
    from story.models.unet import tiny_unet_config
    from story.models.vae import tiny_vae_config

    torch.manual_seed(seed)
    vae_config = tiny_vae_config((8, 16, 16), sample_size=size)
    vae_config["norm_num_groups"] = 8
    unet_config = tiny_unet_config(
        (16, 32), cross_attention_dim=text_dim, sample_size=size // 4, heads=2
    )
    unet_config["norm_num_groups"] = 8
    config = T2VConfig(frames=frames, height=size, width=size, max_text_length=8)
    return StructureT2V.from_configs(vae_config, unet_config, config, encoder_hidden=8)
