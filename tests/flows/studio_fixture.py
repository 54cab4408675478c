"""A tiny render studio for flow tests: an indexed library, small checkpoints, one-plot stories."""

from __future__ import annotations

import shutil
from pathlib import Path

from story.flows.build_index import build_index
from story.flows.render_story import render_story
from story.models.t2v import random_tiny
from story.tasks.settings import REPO_ROOT, Settings
from tests.flows.library_fixture import build_library

FAST = {"steps": 2, "guidance": 2.0}

# One plot each; every story retrieves a different clip of the library fixture's scenes.
STORIES = {
    "ball": "title: Ball\nplots:\n  - text: A red ball bounces on the grass\n    seed: 5\n",
    "cube": "title: Cube\nplots:\n  - A blue cube slides sideways in the snow\n",
    "cone": "title: Cone\nplots:\n  - A yellow cone circles on the sand\n",
    "cylinder": "title: Cylinder\nplots:\n  - A green cylinder moves towards us at dusk\n",
}


def write_checkpoints(folder: Path, extra: tuple[str, ...] = ()) -> Path:
    """`folder` with a random tiny `t2v-tiny` (4 frames, 16x16), one more per name in `extra`
    (seeds 1, 2, ...) and the bundled depth net."""
    random_tiny(frames=4, size=16, seed=0).save_pretrained(folder / "t2v-tiny")
    for seed, name in enumerate(extra, 1):
        random_tiny(frames=4, size=16, seed=seed).save_pretrained(folder / name)
    shutil.copytree(REPO_ROOT / "checkpoints" / "depth-tiny", folder / "depth-tiny")
    return folder


TWO_SHOTS = """\
title: Two shots
plots:
  - text: A red ball bounces on the grass
    seed: 5
  - A blue cube slides sideways in the snow
"""


def story_studio(
    root: Path, manifest: Path, checkpoints: tuple[str, ...] = (), **extra
) -> Settings:
    """`manifest` indexed into `root/ws`, random tiny checkpoints (`write_checkpoints`) and the
    TWO_SHOTS story at `story_file(settings)`; `extra` goes into the settings."""
    folder = write_checkpoints(root / "checkpoints", checkpoints)
    settings = Settings(workspace=root / "ws", checkpoints=folder, **extra)
    build_index(str(manifest), settings.resolved(), use_ray=False)
    (root / "story.yaml").write_text(TWO_SHOTS)
    return settings


def story_file(settings: Settings) -> Path:
    """The TWO_SHOTS story of a `story_studio`."""
    return Path(settings.workspace).parent / "story.yaml"


def build_studio(root: Path, checkpoints: tuple[str, ...] = ("alt", "next"), **extra) -> Settings:
    """Library (4 clips) indexed into `root/ws`; `tiny` plus the named random checkpoints.

    Every checkpoint renders 4 frames of 16x16; `extra` goes into the settings.
    """
    library = build_library(root / "library", n_good=4, with_bad=False)
    folder = write_checkpoints(root / "checkpoints", checkpoints)
    settings = Settings(workspace=root / "ws", checkpoints=folder, ray_workers=2, **extra)
    build_index(str(library.manifest), settings.resolved(), use_ray=False)
    for name, text in STORIES.items():
        (root / f"{name}.yaml").write_text(text)
    return settings


def media_of(settings: Settings, scene: int) -> Path:
    """The library file of scene `scene` (see `library_fixture.SCENES`)."""
    return Path(settings.workspace).parent / "library" / "media" / f"scene_{scene}.mp4"


def render(settings: Settings, story: str, checkpoint: str = "tiny", **kwargs) -> dict:
    """Render one of STORIES (or a story file path) in-process with few denoising steps."""
    path = Path(settings.workspace).parent / f"{story}.yaml" if story in STORIES else Path(story)
    kwargs.setdefault("use_ray", False)
    return render_story(
        str(path), settings.resolved(), checkpoint=checkpoint, params=FAST, **kwargs
    )
