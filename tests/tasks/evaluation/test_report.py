"""The report writer: one JSON and one self-contained HTML page with tables and frame grids."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np

from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.evaluation.report import Grid, Table, cell_text, code_hashes, write_report


def test_report_has_intervals_baselines_and_an_inline_grid(tmp_path) -> None:
    rng = np.random.default_rng(0)
    guided, baseline = rng.uniform(0.5, 1.0, 40), rng.uniform(0.0, 0.5, 40)
    table = Table(
        "scores",
        ["iou"],
        {
            "guided": {"iou": mean_interval(guided)},
            "baseline: frozen": {"iou": mean_interval(baseline)},
            "guided - frozen": {"iou": paired_difference(guided, baseline)},
        },
    )
    clip = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    grid = Grid("frames", [("guided", [clip, small])], frames=2)
    paths = write_report(tmp_path / "out", "Test report", {"model_id": "m@1"}, [table], [grid])

    doc = json.loads(Path(paths["json"]).read_text())
    assert doc["summary"] == {"model_id": "m@1"}
    assert doc["tables"][0]["rows"]["guided"]["iou"]["n"] == 40
    assert set(doc["code"]["code_sha256"]) == {"flows", "tasks", "models"}
    assert doc["code"]["packages"]["lancedb"] and "dirty" in doc["code"]["git"]
    page = Path(paths["html"]).read_text()
    assert "baseline: frozen" in page and cell_text(table.rows["guided"]["iou"]) in page
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \*", page)  # a significant difference
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert "src='http" not in page and 'src="http' not in page
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| baseline: frozen |" in markdown and cell_text(table.rows["guided"]["iou"]) in markdown


def test_the_code_hash_changes_with_any_code_file(tmp_path: Path) -> None:
    for name in ("flows", "tasks/library", "models"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "a.py").write_text("x = 1\n")
    before = code_hashes(tmp_path)
    (tmp_path / "tasks" / "library" / "a.py").write_text("x = 2\n")
    after = code_hashes(tmp_path)
    assert after["tasks"] != before["tasks"]
    assert after["flows"] == before["flows"] and after["models"] == before["models"]
