"""Where a render ran: the git commit (and whether the tree was dirty), package versions, device."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from story.tasks.settings import REPO_ROOT

PACKAGES = (
    "story-pipeline",
    "torch",
    "diffusers",
    "transformers",
    "lancedb",
    "ray",
    "prefect",
    "dvc",
    "numpy",
    "av",
    "opentimelineio",
)


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def environment_info(device: str | None = None, repo: str | Path | None = None) -> dict[str, Any]:
    """Git commit (+ dirty flag), Python and key package versions, and the compute device."""
    root = Path(repo) if repo else REPO_ROOT
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if device is None:
        from story.models.device import pick_device

        device = str(pick_device("auto"))
    return {
        "git": {"commit": commit, "dirty": bool(status) if commit else None},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
    }
