"""Progress where a TD looks: a bar on a terminal, nothing under --json or without a TTY, and a
Prefect progress artifact the UI sees move while the run goes."""

from __future__ import annotations

import io
import sys

import pytest
from prefect import flow

from story.flows import progress as progress_module
from story.flows.progress import Progress, quiet_terminal
from tests.flows.prefect_api import latest_artifact


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _count(progress: Progress, total: int) -> None:
    for done in range(total + 1):
        progress(done, total)


def test_bar_on_a_terminal_and_silent_under_json_or_without_tty(monkeypatch) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with Progress("index shards", key="unused") as progress:
        _count(progress, 4)
    assert "index shards" in terminal.getvalue() and "4/4" in terminal.getvalue()

    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with quiet_terminal(), Progress("index shards", key="unused") as progress:
        _count(progress, 4)
    assert quiet.getvalue() == ""

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with Progress("index shards", key="unused") as progress:
        _count(progress, 4)
    assert piped.getvalue() == ""


@pytest.mark.usefixtures("prefect_harness")
def test_progress_artifact_moves_while_the_run_goes(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "ARTIFACT_EVERY_S", 0.0)
    seen: list[float] = []

    @flow
    def work() -> None:
        with Progress("four steps", key="test-progress") as progress:
            for done in range(1, 5):
                progress(done, 4)
                if done == 2:
                    seen.append(float(latest_artifact("test-progress")["data"]))

    work()
    assert seen == [50.0]
    assert float(latest_artifact("test-progress")["data"]) == 100.0
