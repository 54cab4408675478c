"""A concept's training images (and optional object masks) read from a folder, with hashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from story.tasks.concepts.params import ConceptError
from story.tasks.hashing import sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MASK_SUFFIX = ".mask.png"


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


def mask_sha256(image: Path) -> str | None:
    """sha256 of the object mask next to a training image, if there is one."""
    mask = image.with_name(image.stem + MASK_SUFFIX)
    return sha256_file(mask) if mask.is_file() else None
