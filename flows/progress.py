"""Progress of long work where a TD looks: a terminal bar and a Prefect progress artifact.

A `Progress` is the plain `(done, total)` callback tasks take (`story.tasks.progress`). On a
terminal it draws a rich bar on stderr, except under `--json` (`quiet_terminal`) or when stderr
is not a TTY; inside a Prefect flow run it also keeps a progress artifact up to date, so the
run's page in the UI shows how far it got while it runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

TERMINAL = contextvars.ContextVar("story_progress_terminal", default=True)
ARTIFACT_EVERY_S = 1.0


@contextlib.contextmanager
def quiet_terminal(quiet: bool = True) -> Iterator[None]:
    """No terminal bars inside this block (the CLI's --json mode)."""
    token = TERMINAL.set(not quiet)
    try:
        yield
    finally:
        TERMINAL.reset(token)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class Progress:
    """`with Progress("render 3aad", key="render-progress") as progress: work(progress)`."""

    def __init__(self, description: str, key: str, total: int = 0) -> None:
        self.description = description
        self.key = key
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        self._artifact_id: Any = None
        self._last_artifact = 0.0

    def __enter__(self) -> Progress:
        if TERMINAL.get() and sys.stderr.isatty():
            from rich import progress as rich
            from rich.console import Console

            self._bar = rich.Progress(
                rich.TextColumn("{task.description}"),
                rich.BarColumn(),
                rich.MofNCompleteColumn(),
                rich.TimeElapsedColumn(),
                rich.TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total or None)
        if _in_flow_run():
            from prefect.artifacts import create_progress_artifact

            self._artifact_id = create_progress_artifact(
                progress=0.0, key=self.key, description=self.description
            )
        return self

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
        now = time.monotonic()
        if self._artifact_id is not None and (
            done >= total or now - self._last_artifact >= ARTIFACT_EVERY_S
        ):
            self._update_artifact()
            self._last_artifact = now

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    def _update_artifact(self, percent: float | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        value = self.percent if percent is None else percent
        try:
            update_progress_artifact(self._artifact_id, progress=round(value, 1))
        except Exception:  # noqa: BLE001 - a lost progress update must not fail the work
            log.debug("progress artifact update failed", exc_info=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._artifact_id is not None and exc_type is None:
            self._update_artifact(100.0)
        if self._bar is not None:
            self._bar.stop()
