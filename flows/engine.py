"""Prefect's `flow` decorator, with one engine fix every story flow relies on.

Flow-run heartbeats (how a deployment learns that a run crashed) come from a thread that
Prefect 3.8 stops by polling a flag once a second, and a synchronous flow run joins that
thread before it returns: every run ends with up to 1 s of idle wait, about 0.1x of a 3-plot
render's compute. `install()` swaps in a heartbeat context with the same contract (same events,
same interval and minimum, same stop at a final state, same join timeout) that sleeps on a
`threading.Event`, so stopping is immediate. It is installed only on the Prefect versions it
was checked against and only where the engine still has the hooks it uses; elsewhere Prefect's
own stays. Flow modules import `flow` from here so the fix is in place before any run.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import prefect
from prefect import flow, flow_engine

__all__ = ["flow", "install", "installed"]

CHECKED_VERSIONS = ("3.8.",)
JOIN_TIMEOUT_S = 2.0
THREAD_NAME = "story-flow-heartbeat"
ENGINE_HOOKS = ("_build_heartbeat_event_template", "_emit_flow_run_heartbeat", "heartbeat_seconds")


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
    """Emit the flow run's heartbeat now and every interval until the block exits."""
    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, flow_engine.MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            run = engine.flow_run
            if run is not None and run.state is not None and run.state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:  # noqa: BLE001 - a lost heartbeat must not fail the run
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread runs in a copy of this context so it sees the run's Prefect settings (API URL).
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(beat,), daemon=True, name=THREAD_NAME)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=JOIN_TIMEOUT_S)


def _compatible() -> bool:
    engine = getattr(flow_engine, "FlowRunEngine", None)
    return (
        prefect.__version__.startswith(CHECKED_VERSIONS)
        and hasattr(flow_engine, "_send_heartbeats")
        and hasattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL")
        and engine is not None
        and all(hasattr(engine, hook) for hook in ENGINE_HOOKS)
    )


def install() -> bool:
    """Put `send_heartbeats` into Prefect's flow engine; False (and no change) if incompatible."""
    if not _compatible():
        return False
    flow_engine._send_heartbeats = send_heartbeats
    return True


def installed() -> bool:
    return getattr(flow_engine, "_send_heartbeats", None) is send_heartbeats


install()
