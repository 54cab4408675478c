"""The logger of the running Prefect flow or task, or the module's own outside a run."""

from __future__ import annotations

import logging


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (so lines reach the UI), else `name`'s."""
    from prefect import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run, log normally
        return logging.getLogger(name)
