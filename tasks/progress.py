"""How long work reports how far it got: a plain callback `(done, total)`, no framework.

Flows pass a `story.flows.progress.Progress` (terminal bar + Prefect progress artifact); tests
and library callers pass any callable or nothing.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The default callback: report nothing."""
