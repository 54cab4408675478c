"""The storyboard renders in real headless Chromium: one section per plot, every image loaded
(film strips, each plot's poster frame and the contact sheet).

Needs the `chromium` binary (Debian: `apt-get install -y chromium`); skipped, saying so, when
it is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from story.tasks.outputs.assemble import write_outputs
from story.tasks.outputs.plot_record import PlotRecord
from story.tasks.script.parse import load_story

STORIES = Path(__file__).resolve().parents[2] / "test_files" / "stories"
CHROMIUM = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome")
        if shutil.which(name)
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)"
)

# Appended to a copy of the page (same folder, so the same relative links): after load it
# records on <body> how many images there are and how many decoded to a non-empty bitmap.
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.sections = document.querySelectorAll("section.plot").length;
});
</script>
"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def frames(t: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_storyboard_renders_every_plot_and_image_in_chromium(tmp_path: Path):
    story = load_story(STORIES / "good_basic.yaml")
    records = [
        PlotRecord(
            index=plot.index,
            text=plot.text,
            query=plot.query,
            prompt=plot.prompt,
            clip_id=f"clip{plot.index}",
            clip_uri="media/sample.mp4",
            clip_caption="a red striped ball slides to the left on the grass",
            retrieved_frames=frames(8, 24, 32, plot.index),
            structure=np.linspace(-1, 1, 8 * 24 * 32, dtype=np.float32).reshape(8, 24, 32),
            generated=[frames(8, 24, 32, 10 + n) for n in range(1 + (plot.index == 2))],
            params={"seed": plot.seed, "tau": plot.tau},
        )
        for plot in story.plots
    ]
    outputs = write_outputs(tmp_path / "render", story, records, fps=8, render_id="0123abcd")
    page = tmp_path / "render" / outputs["storyboard"]
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))

    done = chromium(
        "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, done.stdout[:2000]
    attributes = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(1)))
    strips = sum(2 + len(r.candidates) for r in records)
    expected_images = strips + len(records) + 1  # + a poster per plot + the contact sheet
    assert attributes == {
        "images": str(expected_images),
        "loaded": str(expected_images),
        "sections": str(len(story.plots)),
    }
