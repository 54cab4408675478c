"""Tiny real clip libraries for flow tests: miniature-world H.264 clips plus broken files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from story.tasks.outputs.video_io import write_mp4
from story.tasks.world.miniworld import make_caption, render, sample_scene

# Distinct main objects so each caption names one clip unambiguously.
SCENES = (
    {"shape": "sphere", "colour": "red", "motion": "bouncing", "background": "grass"},
    {"shape": "cube", "colour": "blue", "motion": "sideways", "background": "snow"},
    {"shape": "cone", "colour": "yellow", "motion": "circling", "background": "sand"},
    {"shape": "cylinder", "colour": "green", "motion": "towards", "background": "dusk"},
    {"shape": "sphere", "colour": "purple", "motion": "away", "background": "snow"},
    {"shape": "cube", "colour": "orange", "motion": "static", "background": "grass"},
)


@dataclass
class Library:
    root: Path
    manifest: Path
    good: list[dict] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # uri -> expected reason


def write_clip(path: Path, seed: int, **fixed: str) -> tuple[str, object]:
    """Render one miniature-world scene to an H.264 file; return (caption, spec)."""
    spec = sample_scene(seed, frames=16, height=64, width=64, n_objects=1, **fixed)
    clip = render(spec)
    write_mp4(path, clip.rgb, spec.fps)
    return clip.caption, spec


def build_library(root: Path, n_good: int = len(SCENES), with_bad: bool = True) -> Library:
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    lib = Library(root=root, manifest=root / "manifest.jsonl")
    for i, fixed in enumerate(SCENES[:n_good]):
        path = media / f"scene_{i}.mp4"
        caption, spec = write_clip(path, 100 + i, **fixed)
        lib.good.append(
            {
                "uri": f"media/{path.name}",
                "caption": caption,
                "paraphrase": make_caption(spec, variant=3),
                "source": "miniworld",
                "license": "CC0-1.0",
            }
        )
    if with_bad:
        (media / "empty.mp4").write_bytes(b"")
        good_bytes = (media / "scene_0.mp4").read_bytes()
        (media / "truncated.mp4").write_bytes(good_bytes[: len(good_bytes) * 2 // 5])
        (media / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
        lib.bad = {
            "media/empty.mp4": "zero bytes",
            "media/truncated.mp4": "truncated",
            "media/noise.mp4": "undecodable",
            "media/missing.mp4": "missing file",
        }
    write_manifest(lib.manifest, lib.good, list(lib.bad))
    return lib


def write_manifest(path: Path, good: list[dict], bad_uris: list[str]) -> None:
    rows = [{k: v for k, v in g.items() if k != "paraphrase"} for g in good]
    rows += [
        {"uri": uri, "caption": "broken", "source": "test", "license": "none"} for uri in bad_uris
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
