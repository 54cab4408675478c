"""Second backend: AnimateDiff (`UNetMotionModel`) + a depth `ControlNetModel`, from local folders.

For studios with public weights (a Stable Diffusion 1.5 U-Net + VAE, an AnimateDiff motion
adapter, a depth ControlNet). It exposes the same surface as `StructureT2V` (`encode_prompts`,
`encode_structure`, `predict`, `decode_latents`, `scheduler`, `config`), so the DDIM sampler and
`synthesize` drive it unchanged; the "structure encoder" here is the ControlNet, which is run only
at steps with t >= tau and whose residuals are scaled by the structure strength.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
)

from story.models.device import pick_device
from story.models.structure_encoder import blur_structure
from story.models.t2v import T2VConfig, VideoModelBase, default_scheduler
from story.models.vae import decode_video

BACKEND_FILE = "backend.json"


class DepthCondition:
    """The ControlNet input: the guide as 3-channel images in [0, 1], one per frame."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images


class AnimateDiffDepth(VideoModelBase):
    """AnimateDiff video U-Net guided by a depth ControlNet; latents (B, 4, T, H/8, W/8)."""

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNetMotionModel,
        controlnet: ControlNetModel,
        scheduler: DDIMScheduler,
        config: T2VConfig,
    ) -> None:
        super().__init__()
        self.vae, self.unet, self.controlnet = vae, unet, controlnet
        self.scheduler = scheduler
        self.config = config
        self._text_encoder = None

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto") -> AnimateDiffDepth:
        """A folder with `vae/`, `unet/` (UNetMotionModel), `controlnet/`, `scheduler/` and
        `backend.json` (text encoder name and clip geometry), as `save_pretrained` writes it."""
        root = Path(folder)
        index = root / BACKEND_FILE
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing, not an AnimateDiff depth backend folder")
        config = T2VConfig.from_dict(json.loads(index.read_text()))
        model = cls(
            AutoencoderKL.from_pretrained(root / "vae", local_files_only=True),
            UNetMotionModel.from_pretrained(root / "unet", local_files_only=True),
            ControlNetModel.from_pretrained(root / "controlnet", local_files_only=True),
            DDIMScheduler.from_pretrained(root / "scheduler"),
            config,
        )
        return model.to(pick_device(device)).eval()

    @classmethod
    def from_components(
        cls,
        stable_diffusion: str | Path,
        motion_adapter: str | Path,
        controlnet: str | Path,
        config: T2VConfig,
        device: str = "auto",
    ) -> AnimateDiffDepth:
        """Assemble from a Stable Diffusion folder (`unet/`, `vae/`), a MotionAdapter folder and
        a ControlNet folder, all local; the SD scheduler becomes DDIM."""
        base = Path(stable_diffusion)
        for path in (base / "unet", base / "vae", Path(motion_adapter), Path(controlnet)):
            if not path.is_dir():
                raise FileNotFoundError(f"{path}: folder not found")
        unet2d = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True)
        adapter = MotionAdapter.from_pretrained(motion_adapter, local_files_only=True)
        scheduler_dir = base / "scheduler"
        scheduler = (
            DDIMScheduler.from_pretrained(scheduler_dir)
            if scheduler_dir.is_dir()
            else default_scheduler("epsilon")
        )
        model = cls(
            AutoencoderKL.from_pretrained(base / "vae", local_files_only=True),
            UNetMotionModel.from_unet2d(unet2d, adapter),
            ControlNetModel.from_pretrained(controlnet, local_files_only=True),
            scheduler,
            config,
        )
        return model.to(pick_device(device)).eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(root / "vae", safe_serialization=True)
        self.unet.save_pretrained(root / "unet", safe_serialization=True)
        self.controlnet.save_pretrained(root / "controlnet", safe_serialization=True)
        self.scheduler.save_pretrained(root / "scheduler")
        index = {"_class_name": type(self).__name__, **asdict(self.config)}
        (root / BACKEND_FILE).write_text(json.dumps(index, indent=2) + "\n")
        return root

    def encode_structure(self, structure: torch.Tensor, detail: int = 0) -> DepthCondition:
        """(B, 1, T, H, W) disparity in [-1, 1] -> per-frame RGB depth images in [0, 1]."""
        b, c, t, h, w = structure.shape
        frames = blur_structure(structure.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), detail)
        images = (frames.to(self.device) + 1.0) / 2.0
        if c == 1:
            images = images.expand(-1, 3, -1, -1)
        return DepthCondition(images)

    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_states: torch.Tensor,
        features: DepthCondition | None = None,
        strength: float = 1.0,
        temporal: bool = True,
    ) -> torch.Tensor:
        """Motion U-Net output; with a condition, the ControlNet residuals are added first."""
        if not temporal:
            raise ValueError("the AnimateDiff backend has no temporal switch: temporal guidance 1")
        b, c, t, h, w = latents.shape
        states = text_states.repeat_interleave(t, dim=0)
        down = mid = None
        if features is not None and strength != 0:
            images = features.images
            if images.shape[0] != b * t:
                images = images.repeat(b * t // images.shape[0], 1, 1, 1)
            frames = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            down, mid = self.controlnet(
                frames,
                timesteps.repeat_interleave(t),
                encoder_hidden_states=states,
                controlnet_cond=images,
                conditioning_scale=strength,
                return_dict=False,
            )
        return self.unet(
            latents,
            timesteps,
            encoder_hidden_states=states,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample

    def decode_latents(
        self, latents: torch.Tensor, structure: torch.Tensor | None = None
    ) -> torch.Tensor:
        del structure  # no latent smoother here: the interface's argument, unused
        return decode_video(self.vae, latents, self.vae.config.scaling_factor)
