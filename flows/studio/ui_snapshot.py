"""Headless Chromium on the studio's Prefect UI: a page's rendered DOM, or a screenshot of it.

The UI is a single-page app that fetches from the API after load, so Chromium is given a
virtual-time budget to let those requests finish before it reads or draws the page.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
BUDGET_MS = 20000


def chromium_binary() -> str | None:
    return next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )


def _run(url: str, *args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (`make browser`)")
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"{url}: only the studio's own 127.0.0.1 UI is captured")
    with tempfile.TemporaryDirectory(prefix="story-chromium-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={BUDGET_MS}", *args, url],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran."""
    return _run(url, "--dump-dom").stdout


def screenshot(url: str, out: Path, width: int = 1400, height: int = 1000) -> Path:
    """A PNG of the page at `width` x `height`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(url, f"--screenshot={out}", f"--window-size={width},{height}")
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}: {proc.stderr[-2000:]}")
    return out
