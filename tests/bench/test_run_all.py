"""`make bench` / `make bench-quick`: every benchmark is found, and a quick run keeps the
committed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run_all


def test_every_benchmark_is_found_and_has_quick_arguments() -> None:
    names = run_all.discover()
    on_disk = sorted(p.stem for p in run_all.BENCH.glob("bench_*.py"))
    assert names == [*on_disk, "faults"]
    missing = [n for n in names if n not in run_all.QUICK_ARGS]
    assert not missing, f"no --quick arguments for {missing}: a smoke run would take hours"


def test_a_quick_run_reports_and_leaves_committed_results_alone(tmp_path: Path) -> None:
    committed = run_all.RESULTS / "shots.json"
    before = committed.read_bytes()
    code = run_all.main(["--quick", "--only", "bench_shots", "--scratch", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "run_all.json").read_text())
    assert report["mode"] == "quick"
    assert [(r["name"], r["status"]) for r in report["runs"]] == [("bench_shots", "ok")]
    assert committed.read_bytes() == before
    assert (tmp_path / "changed" / "bench" / "results" / "shots.json").is_file()


def test_an_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["--only", "bench_nothing"])
    assert exit_info.value.code == 2
    assert "no benchmark named bench_nothing" in capsys.readouterr().err
