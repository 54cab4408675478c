"""Character concepts: train a `<name>` token (TimeInv table, optional LoRA) from a few images.

One trainer, five methods, so they can be compared:
- `none`: no training; the token is the class word's embedding (the baseline).
- `ti`: textual inversion, one vector for every timestep.
- `ti_lora`: that vector plus LoRA on the U-Net's spatial attention.
- `timeinv`: a table of `buckets` vectors, one per timestep bucket.
- `timeinv_lora`: the table plus LoRA (the paper's method).

Each image becomes a pseudo-video of the model's frame count with its static depth as the
structure guide, so the concept learns appearance, not "standing still"; crops, flips, zooming
out (the picture shrunk and moved, so the character is seen at other sizes and places and its
layout comes from the guide) and a mild brightness / contrast jitter keep its identity. Optional
regularisation clips (retrieved from the library by the class word) are trained with their own
captions alongside; they keep a LoRA close to the base model.

A pack is a folder `<name>/` with `concept.safetensors` (`timeinv.table` and `lora.*` tensors) and
`concept.json` (token, class word, base checkpoint fingerprint, method, params, steps, loss curve,
image hashes). A pack only loads onto the checkpoint it was trained for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from story.models.structure_norm import normalize_structure
from story.models.t2v import StructureT2V
from story.models.timeinv import (
    CONCEPT_PATTERN,
    DEFAULT_BUCKETS,
    LORA_TARGETS,
    NUM_TRAIN_TIMESTEPS,
    SPATIAL_ATTENTION,
    ConceptConditioner,
    TimeInvTable,
    active_loras,
    add_lora,
    class_word_embedding,
    concept_names,
    concept_states,
    load_lora,
    lora_adapters,
    lora_parameters,
    lora_state_dict,
    remove_lora,
    set_active_loras,
    tokenize_concepts,
)
from story.tasks.concepts.methods import (
    DEFAULT_LR_LORA,
    DEFAULT_LR_TABLE,
    DEFAULT_STEPS,
    METHODS,
)
from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_bytes, sha256_file
from story.tasks.training.train_t2v import min_snr_weight

PACK_WEIGHTS = "concept.safetensors"
PACK_META = "concept.json"
PACK_FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MASK_SUFFIX = ".mask.png"
TEMPLATES: tuple[str, ...] = (
    "<name>",
    "a <name>",
    "a photo of a <name>",
    "a <name> on the ground",
    "a still <name>",
    "a <name> in a scene",
    "a rendering of the <name>",
    "a close view of a <name>",
)
FINGERPRINT_MODULES = ("vae", "unet", "structure_encoder")


class ConceptError(StoryError, ValueError):
    """A concept's images, pack, name or method cannot be used; the message names which."""


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


# --- images ---------------------------------------------------------------------------------


@dataclass
class ConceptImages:
    """The training images as (H, W, 3) uint8 arrays, their files and sha256, and optional object
    masks ((H, W) bool, from `<stem>.mask.png` next to an image) that weight the loss."""

    folder: Path
    files: list[Path]
    images: list[np.ndarray]
    sha256: list[str]
    masks: list[np.ndarray | None] = field(default_factory=list)


def read_concept_images(folder: str | Path, size: int = 64) -> ConceptImages:
    """Every image in `folder` (png/jpg/bmp/webp), square-cropped and resized to `size`.

    `<stem>.mask.png` files are not images but the object masks of `<stem>.*` (white = object).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.exists():
        raise ConceptError(f"{root}: concept image folder not found")
    if not root.is_dir():
        raise ConceptError(f"{root}: not a folder (give the folder holding the concept images)")
    entries = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [
        p
        for p in entries
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.lower().endswith(MASK_SUFFIX)
    ]
    if not files:
        found = ", ".join(p.name for p in entries[:5]) or "nothing"
        raise ConceptError(
            f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the concept folder; found {found}"
        )

    def square(path: Path, mode: str):
        try:
            with Image.open(path) as handle:
                picture = handle.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ConceptError(f"{path}: unreadable image: {err}") from err
        w, h = picture.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        return np.asarray(picture.crop(box).resize((size, size), Image.BICUBIC))

    images, masks = [], []
    for path in files:
        images.append(square(path, "RGB").astype(np.uint8))
        mask_path = path.with_name(path.stem + MASK_SUFFIX)
        masks.append(square(mask_path, "L") > 127 if mask_path.is_file() else None)
    return ConceptImages(root, files, images, [sha256_file(p) for p in files], masks)


# --- checkpoint fingerprint -----------------------------------------------------------------


def _tensor_digest(digest: Any, key: str, tensor: torch.Tensor) -> None:
    digest.update(key.encode("utf-8") + b"\0")
    digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())


def model_fingerprint(model: StructureT2V, length: int = 16) -> str:
    """Content hash of the base weights (VAE, U-Net, structure encoder); LoRA adapters excluded.

    Equal to `checkpoint_fingerprint` of the folder the model was loaded from.
    """
    digest = hashlib.sha256()
    for module_name in FINGERPRINT_MODULES:
        state = getattr(model, module_name).state_dict()
        keys = {k.replace(".base_layer.", "."): k for k in state if ".lora_" not in k}
        for key in sorted(keys):
            _tensor_digest(digest, f"{module_name}/{key}", state[keys[key]])
    return digest.hexdigest()[:length]


def checkpoint_fingerprint(folder: str | Path, length: int = 16) -> str:
    """Content hash of a StructureT2V checkpoint folder's safetensors, without loading the model."""
    root = Path(folder)
    digest = hashlib.sha256()
    for module_name in FINGERPRINT_MODULES:
        files = sorted((root / module_name).glob("*.safetensors"))
        if not files:
            raise ConceptError(f"{root / module_name}: no safetensors weights in the checkpoint")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        for key in sorted(state):
            _tensor_digest(digest, f"{module_name}/{key}", state[key])
    return digest.hexdigest()[:length]


# --- packs ----------------------------------------------------------------------------------


@dataclass
class ConceptPack:
    """A trained concept: its table (buckets, d), optional LoRA weights, and its metadata."""

    name: str
    class_word: str
    method: str
    base_checkpoint: str
    table: torch.Tensor
    lora: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def token(self) -> str:
        return f"<{self.name}>"

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"timeinv.table": self.table.detach().float().cpu().contiguous()}
        for key, value in (self.lora or {}).items():
            out[f"lora.{key}"] = value.detach().float().cpu().contiguous()
        return out

    def save(self, folder: str | Path) -> Path:
        """Write `<folder>/concept.safetensors` and `<folder>/concept.json`; returns the folder."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        save_file(self.tensors(), str(root / PACK_WEIGHTS))
        meta = {
            **self.meta,
            "format": PACK_FORMAT,
            "name": self.name,
            "token": self.token,
            "class_word": self.class_word,
            "method": self.method,
            "base_checkpoint": self.base_checkpoint,
            "buckets": int(self.table.shape[0]),
            "weights_sha256": sha256_file(root / PACK_WEIGHTS),
        }
        (root / PACK_META).write_text(json.dumps(meta, indent=2) + "\n")
        self.meta, self.path = meta, root
        return root

    @classmethod
    def load(cls, folder: str | Path) -> ConceptPack:
        """Read a pack folder written by `save`."""
        root = Path(folder)
        meta_path, weights_path = root / PACK_META, root / PACK_WEIGHTS
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise ConceptError(f"{path}: missing, {root} is not a concept pack folder")
        try:
            meta = json.loads(meta_path.read_text())
            name, class_word = meta["name"], meta["class_word"]
            method, base = meta["method"], meta["base_checkpoint"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConceptError(f"{meta_path}: unreadable concept metadata: {err}") from err
        if meta.get("weights_sha256") not in (None, sha256_file(weights_path)):
            raise ConceptError(f"{weights_path}: weights do not match the sha256 in {meta_path}")
        tensors = load_file(str(weights_path))
        if "timeinv.table" not in tensors:
            raise ConceptError(f"{weights_path}: no timeinv.table tensor")
        lora = {k[len("lora.") :]: v for k, v in tensors.items() if k.startswith("lora.")}
        return cls(
            name=check_name(name),
            class_word=class_word,
            method=method,
            base_checkpoint=base,
            table=tensors["timeinv.table"],
            lora=lora or None,
            meta=meta,
            path=root,
        )

    def check_checkpoint(self, fingerprint: str) -> None:
        """Refuse a model whose base weights differ from the ones the pack was trained on."""
        if fingerprint != self.base_checkpoint:
            where = f" ({self.path})" if self.path else ""
            raise ConceptError(
                f"concept pack {self.token}{where} was trained for checkpoint "
                f"{self.base_checkpoint}, but this model is checkpoint {fingerprint}: retrain the "
                "concept for this checkpoint (`story concept train`)"
            )


def list_packs(folder: str | Path) -> list[dict[str, Any]]:
    """Summaries of every pack folder directly under `folder` (missing folder: none)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    rows = []
    for meta_path in sorted(root.glob(f"*/{PACK_META}")):
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ConceptError(f"{meta_path}: unreadable concept metadata: {err}") from err
        curve = meta.get("loss_curve") or []
        rows.append(
            {
                "name": meta.get("name"),
                "token": meta.get("token"),
                "class_word": meta.get("class_word"),
                "method": meta.get("method"),
                "steps": meta.get("steps"),
                "buckets": meta.get("buckets"),
                "base_checkpoint": meta.get("base_checkpoint"),
                "final_loss": curve[-1]["loss"] if curve else None,
                "images": len(meta.get("images", [])),
                "path": str(meta_path.parent),
            }
        )
    return rows


# --- training -------------------------------------------------------------------------------


@dataclass
class TrainingClip:
    """One clip to train on: video (3, T, H, W) and structure (1, T, H, W) in [-1, 1]."""

    video: torch.Tensor
    structure: torch.Tensor
    caption: str

    @classmethod
    def from_frames(
        cls, rgb: np.ndarray, caption: str, depth: Callable[[np.ndarray], np.ndarray]
    ) -> TrainingClip:
        """(T, H, W, 3) uint8 frames with their caption; the structure is `depth` of them."""
        video = torch.from_numpy(np.array(rgb)).float().div(127.5).sub(1).permute(3, 0, 1, 2)
        structure = torch.from_numpy(np.asarray(depth(rgb), np.float32))[None]
        return cls(video, structure, caption)


class PseudoVideos:
    """Augmented pseudo-videos of the concept images, each with its static depth as the guide."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray | None],
        depth: Callable[[np.ndarray], np.ndarray],
        frames: int,
        height: int,
        width: int,
        params: ConceptParams,
    ) -> None:
        self.frames, self.height, self.width, self.params = frames, height, width, params
        self.images = [
            torch.from_numpy(np.array(i, np.float32)).permute(2, 0, 1) / 255 for i in images
        ]
        self.depths = [torch.from_numpy(np.asarray(depth(i[None]), np.float32)[0]) for i in images]
        self.masks = [
            torch.ones(i.shape[:2]) if m is None else torch.from_numpy(m.astype(np.float32))
            for i, m in zip(images, list(masks) or [None] * len(images), strict=True)
        ]

    def clip(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random crop / flip / zoom-out / jitter of image `index` as (video, structure, object
        mask). Zooming out shrinks the picture by up to `zoom_out` and places it anywhere in the
        frame, its border pixels extended outwards, so the concept is seen at other sizes and
        places and its layout has to come from the structure guide."""
        image, disparity, mask = self.images[index], self.depths[index], self.masks[index]
        _, h, w = image.shape
        scale = rng.uniform(self.params.crop_scale, 1.0)
        ch, cw = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        image = image[:, top : top + ch, left : left + cw]
        disparity = disparity[top : top + ch, left : left + cw]
        mask = mask[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            image, disparity, mask = image.flip(-1), disparity.flip(-1), mask.flip(-1)
        size = (self.height, self.width)
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
        disparity = F.interpolate(disparity[None, None], size=size, mode="bilinear")[0, 0]
        mask = F.interpolate(mask[None, None], size=size, mode="bilinear")[0]
        if self.params.zoom_out > 0:
            image, disparity, mask = self._zoom_out(image, disparity, mask, rng)
        jitter = self.params.jitter
        brightness = rng.uniform(1 - jitter, 1 + jitter)
        contrast = rng.uniform(1 - jitter, 1 + jitter)
        image = ((image - image.mean()) * contrast + image.mean()) * brightness
        video = (image.clamp(0, 1) * 2 - 1)[:, None].expand(-1, self.frames, -1, -1)
        guide = normalize_structure(disparity[None], mode="frame")
        structure = guide[None].expand(-1, self.frames, -1, -1)
        return video.contiguous(), structure.contiguous(), mask

    def _zoom_out(
        self, image: torch.Tensor, disparity: torch.Tensor, mask: torch.Tensor, rng
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = rng.uniform(1 - self.params.zoom_out, 1.0)
        h, w = max(2, round(self.height * scale)), max(2, round(self.width * scale))
        top, left = (
            int(rng.integers(0, self.height - h + 1)),
            int(rng.integers(0, self.width - w + 1)),
        )
        pad = (left, self.width - w - left, top, self.height - h - top)

        def place(x: torch.Tensor, mode: str) -> torch.Tensor:
            small = F.interpolate(x[None], size=(h, w), mode="bilinear", antialias=True)
            return F.pad(small, pad, mode=mode)[0]

        return (
            place(image, "replicate"),
            place(disparity[None], "replicate")[0],
            place(mask, "constant"),
        )


def _mask_sha256(image: Path) -> str | None:
    mask = image.with_name(image.stem + MASK_SUFFIX)
    return sha256_file(mask) if mask.is_file() else None


def regularization_clips(
    index: Any,
    encoder: Any,
    class_word: str,
    count: int,
    depth: Callable[[np.ndarray], np.ndarray],
    frames: int,
    height: int,
    width: int,
) -> list[TrainingClip]:
    """Top clips of the library for the class word, with their captions and estimated depth."""
    from story.tasks.library.media import read_frames
    from story.tasks.library.search import search

    clips = []
    for hit in search(index, encoder, class_word, k=count):
        row = index.get(hit.clip_id) or {}
        available = list(row.get("frame_indices") or [])
        if not available:
            continue
        pick = np.linspace(0, len(available) - 1, frames).round().astype(int)
        rgb = read_frames(hit.uri, [int(available[i]) for i in pick], size=(height, width))
        clips.append(TrainingClip.from_frames(rgb, hit.caption, depth))
    return clips


@dataclass
class TrainResult:
    """A trained pack and how its training went."""

    pack: ConceptPack
    loss_curve: list[dict[str, float]]
    seconds: float


def concept_loss(
    model: StructureT2V,
    latents: torch.Tensor,
    text: torch.Tensor,
    timesteps: torch.Tensor,
    structure: torch.Tensor | None,
    weights: torch.Tensor,
    gamma: float,
    generator: torch.Generator | None = None,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The base model's denoising loss (same target and min-SNR weights) at given timesteps.

    `pixel_weights` (B, 1, H, W) at any resolution weight the error per latent pixel (e.g. the
    object up-weighted), normalised per clip so the loss scale stays the same.
    """
    scheduler = model.scheduler
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    v_pred = model.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, timesteps) if v_pred else noise
    features = model.encode_structure(structure) if structure is not None else None
    pred = model.predict(noisy, timesteps, text, features)
    error = F.mse_loss(pred, target, reduction="none")
    if pixel_weights is None:
        per_clip = error.mean(dim=(1, 2, 3, 4))
    else:
        w = F.adaptive_avg_pool2d(pixel_weights.to(error.device), error.shape[-2:])[:, :, None]
        per_clip = (error * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))
    acp = scheduler.alphas_cumprod.to(latents.device)
    snr_weight = min_snr_weight(acp, timesteps, gamma, v_pred)
    return (per_clip * snr_weight * weights).sum() / weights.sum()


def default_depth(checkpoints: str | Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The bundled tiny depth net as `frames -> (T, H, W)` normalised disparity."""
    from story.models.depth import load_depth_estimator

    if checkpoints is None:
        from story.tasks.settings import get_settings

        checkpoints = get_settings().checkpoints
    estimator = load_depth_estimator("tiny", checkpoints, device="cpu")
    return estimator.estimate


def train_concept(
    model: StructureT2V,
    name: str,
    images: str | Path | ConceptImages,
    class_word: str,
    params: ConceptParams | None = None,
    *,
    out: str | Path | None = None,
    depth: Callable[[np.ndarray], np.ndarray] | None = None,
    regularization: Sequence[TrainingClip] = (),
    base_checkpoint: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train `<name>` on the images with the chosen method; the model itself is left unchanged.

    `depth` maps (T, H, W, 3) uint8 frames to (T, H, W) disparity in [-1, 1] (default: the
    bundled tiny depth net); `base_checkpoint` is the model's fingerprint if already known.
    `regularization` clips keep the LoRA from drifting away from the base model on the class
    word's usual clips; their captions do not name the concept, so methods without LoRA have
    nothing they could train on them and leave them out.
    """
    params = params or ConceptParams()
    check_name(name)
    data = (
        images
        if isinstance(images, ConceptImages)
        else read_concept_images(images, params.source_size)
    )
    if not params.uses_lora:
        regularization = ()
    previous = torch.get_num_threads()
    torch.set_num_threads(params.threads)
    try:
        return _train(
            model,
            name,
            data,
            class_word,
            params,
            out,
            depth,
            regularization,
            base_checkpoint,
            progress,
        )
    finally:
        torch.set_num_threads(previous)


def _train(
    model: StructureT2V,
    name: str,
    data: ConceptImages,
    class_word: str,
    params: ConceptParams,
    out: str | Path | None,
    depth: Callable[[np.ndarray], np.ndarray] | None,
    regularization: Sequence[TrainingClip],
    base_checkpoint: str | None,
    progress: Callable[[int, int, float], None] | None,
) -> TrainResult:
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    started = time.monotonic()
    fingerprint = base_checkpoint or model_fingerprint(model)
    encoder = model.text_encoder()
    # The text encoder is shared, not copied: it stays frozen and unchanged.
    work = copy.deepcopy(model, {id(encoder): encoder})
    work.set_text_encoder(encoder)
    for module in (work.vae, work.unet, work.structure_encoder):
        module.requires_grad_(False)
    work.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    table = TimeInvTable.from_vector(
        class_word_embedding(encoder, class_word), params.table_buckets
    )
    groups: list[dict[str, Any]] = [{"params": [table.table], "lr": params.lr_table}]
    if params.uses_lora:
        for existing in lora_adapters(work.unet):
            remove_lora(work.unet, existing)
        add_lora(
            work.unet, name, params.lora_rank, params.lora_alpha, LORA_TARGETS[params.lora_targets]
        )
        set_active_loras(work.unet, [name])
        groups.append({"params": lora_parameters(work.unet, name), "lr": params.lr_lora})
    cfg = work.config
    videos = PseudoVideos(
        data.images, data.masks, depth or default_depth(), cfg.frames, cfg.height, cfg.width, params
    )
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    trainable = [p for group in groups for p in group["params"]]
    tables = {name: table}
    prompt_cache: dict[str, torch.Tensor] = {}
    curve: list[dict[str, float]] = []
    window: list[float] = []
    steps = 0 if params.method == "none" else params.steps
    for step in range(1, steps + 1):
        picks = rng.integers(0, len(videos.images), params.batch)
        pairs = [videos.clip(int(i), rng) for i in picks]
        prompts = [
            TEMPLATES[int(rng.integers(len(TEMPLATES)))].replace("<name>", f"<{name}>")
            for _ in picks
        ]
        video = torch.stack([v for v, _, _ in pairs])
        structure = torch.stack([s for _, s, _ in pairs])
        objects = torch.stack([m for _, _, m in pairs])
        reg = (
            [regularization[int(i)] for i in rng.integers(0, len(regularization), 1)]
            if regularization
            else []
        )
        n_reg = len(reg)
        if reg:
            video = torch.cat([video, torch.stack([c.video for c in reg])])
            structure = torch.cat([structure, torch.stack([c.structure for c in reg])])
            objects = torch.cat([objects, torch.ones(n_reg, *objects.shape[1:])])
        total = video.shape[0]
        low, high = 0, work.scheduler.config.num_train_timesteps
        if params.uses_lora and params.lora_max_t < high:
            # The LoRA only acts below lora_max_t: a step trains either there with it on, or
            # above with it off (so every sample still sees a uniform timestep).
            lora_on = rng.random() < params.lora_max_t / high
            low, high = (0, params.lora_max_t) if lora_on else (params.lora_max_t, high)
            set_active_loras(work.unet, [name] if lora_on else [])
        timesteps = torch.randint(low, high, (total,), generator=generator)
        with torch.no_grad():
            latents = work.encode_video(video.to(work.device), generator)
        tokens = tokenize_concepts(encoder, prompts, cfg.max_text_length)
        text = concept_states(
            encoder, tokens, tables, timesteps[: len(prompts)], cfg.max_text_length
        )
        if reg:
            for clip in reg:
                if clip.caption not in prompt_cache:
                    prompt_cache[clip.caption] = work.encode_prompts([clip.caption]).cpu()
            text = torch.cat([text, torch.cat([prompt_cache[c.caption] for c in reg])])
        weights = torch.tensor([1.0] * len(prompts) + [params.reg_weight] * n_reg)
        guide = None if rng.random() < params.structure_dropout else structure.to(work.device)
        loss = concept_loss(
            work,
            latents,
            text.to(work.device),
            timesteps.to(work.device),
            guide,
            weights.to(work.device),
            params.min_snr_gamma,
            generator,
            pixel_weights=1.0 + params.object_weight * objects,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        window.append(float(loss.detach()))
        if step % params.log_every == 0 or step == steps:
            curve.append({"step": step, "loss": float(np.mean(window))})
            window = []
        if progress is not None:
            progress(step, steps, float(loss.detach()))
    lora = lora_state_dict(work.unet, name) if params.uses_lora else None
    seconds = time.monotonic() - started
    meta = {
        "params": asdict(params),
        "steps": steps,
        "loss_curve": curve,
        "images": [
            {"file": p.name, "sha256": h, "mask_sha256": _mask_sha256(p)}
            for p, h in zip(data.files, data.sha256, strict=True)
        ],
        "images_folder": str(data.folder),
        "text_encoder": cfg.text_encoder,
        "lora": (
            {
                "rank": params.lora_rank,
                "alpha": params.lora_alpha,
                "targets": LORA_TARGETS[params.lora_targets],
                "max_t": params.lora_max_t,
            }
            if lora
            else None
        ),
        "regularization_clips": len(regularization),
        "train_seconds": round(seconds, 2),
        "images_sha256": sha256_bytes("".join(data.sha256).encode()),
    }
    pack = ConceptPack(
        name=name,
        class_word=class_word,
        method=params.method,
        base_checkpoint=fingerprint,
        table=table.table.detach().cpu(),
        lora=lora,
        meta=meta,
    )
    if out is not None:
        pack.save(out)
    return TrainResult(pack, curve, seconds)


# --- rendering with concepts ----------------------------------------------------------------


class ConceptSet:
    """The concepts loaded on one model; `applied(prompt)` is what `synthesize` asks for."""

    def __init__(self, model: StructureT2V) -> None:
        self.model = model
        self.fingerprint = model_fingerprint(model)
        self.packs: dict[str, ConceptPack] = {}
        self.tables: dict[str, TimeInvTable] = {}
        self.lora_max_t: dict[str, int] = {}

    def add(self, pack: ConceptPack) -> None:
        """Load a pack (checked against the model); the same pack again is a no-op."""
        pack.check_checkpoint(self.fingerprint)
        old = self.packs.get(pack.name)
        if old is not None and old.meta.get("weights_sha256") == pack.meta.get("weights_sha256"):
            return
        if pack.name in lora_adapters(self.model.unet):
            remove_lora(self.model.unet, pack.name)
        lora_meta = pack.meta.get("lora") or {}
        if pack.lora:
            load_lora(
                self.model.unet,
                pack.name,
                pack.lora,
                int(lora_meta.get("rank", 4)),
                float(lora_meta.get("alpha", 4.0)),
                str(lora_meta.get("targets") or SPATIAL_ATTENTION),
            )
        self.packs[pack.name] = pack
        self.tables[pack.name] = TimeInvTable(pack.table).requires_grad_(False)
        self.lora_max_t[pack.name] = int(lora_meta.get("max_t", NUM_TRAIN_TIMESTEPS))

    @contextmanager
    def applied(self, prompt: str) -> Iterator[torch.Tensor | ConceptConditioner]:
        """Text states of a prompt; per timestep, with the named concepts' LoRA on, in the block."""
        names = concept_names(prompt)
        if not names:
            yield self.model.encode_prompts([prompt])
            return
        cfg = self.model.config
        encoder = self.model.text_encoder()
        try:
            tokens = tokenize_concepts(
                encoder, [prompt], cfg.max_text_length, known=list(self.tables)
            )
        except ValueError as err:
            raise ConceptError(str(err)) from err
        loras = [n for n in names if self.packs[n].lora]
        switch = None
        if any(self.lora_max_t[n] < NUM_TRAIN_TIMESTEPS for n in loras):
            # Some LoRA only acts below its lora_max_t: switch the set on every step.
            unet, current = self.model.unet, list(loras)

            def switch(t: int) -> None:
                nonlocal current
                wanted = [n for n in loras if t < self.lora_max_t[n]]
                if wanted != current:
                    set_active_loras(unet, wanted)
                    current = wanted

        with active_loras(self.model.unet, loras):
            yield ConceptConditioner(
                encoder, tokens, self.tables, cfg.max_text_length, self.model.device, switch
            )

    def remove(self) -> None:
        """Take every LoRA adapter out of the U-Net again."""
        for name in list(lora_adapters(self.model.unet)):
            remove_lora(self.model.unet, name)
        self.packs.clear()
        self.tables.clear()
        self.lora_max_t.clear()


def _as_pack(value: ConceptPack | str | Path) -> ConceptPack:
    return value if isinstance(value, ConceptPack) else ConceptPack.load(value)


def load_concepts(model: StructureT2V, packs: Mapping[str, ConceptPack | str | Path]) -> ConceptSet:
    """Load packs (name -> pack or pack folder) onto `model`; `synthesize` then reads `<name>`."""
    concepts = getattr(model, "concepts", None)
    if not isinstance(concepts, ConceptSet):
        concepts = ConceptSet(model)
        model.concepts = concepts
    for name, value in packs.items():
        pack = _as_pack(value)
        if pack.name != name:
            raise ConceptError(
                f"{pack.path or 'pack'}: holds concept <{pack.name}>, not <{name}> as requested"
            )
        concepts.add(pack)
    return concepts


def unload_concepts(model: StructureT2V) -> None:
    """Remove every loaded concept (and its LoRA) from the model."""
    concepts = getattr(model, "concepts", None)
    if isinstance(concepts, ConceptSet):
        concepts.remove()
        del model.concepts


def render_with_concepts(
    model: StructureT2V,
    prompt: str,
    structure: np.ndarray | None,
    packs: Mapping[str, ConceptPack | str | Path],
    **synth_kwargs: Any,
) -> np.ndarray:
    """`synthesize` with the given concept packs loaded (kept loaded for the next call)."""
    from story.tasks.render.synthesize import synthesize

    load_concepts(model, packs)
    return synthesize(model, prompt, structure, **synth_kwargs)
