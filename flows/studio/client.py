"""A synchronous Prefect client of one studio's server (whatever PREFECT_API_URL says here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from story.flows.studio.layout import StudioLayout


@contextmanager
def studio_settings(layout: StudioLayout) -> Iterator[None]:
    """Prefect settings pointing this process at the studio's API and result storage."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        PREFECT_UI_URL,
        temporary_settings,
    )

    updates = {
        PREFECT_API_URL: layout.api_url,
        PREFECT_UI_URL: layout.ui_url,
        PREFECT_LOCAL_STORAGE_PATH: str(layout.root / "results"),
        PREFECT_RESULTS_PERSIST_BY_DEFAULT: True,
    }
    with temporary_settings(updates=updates):
        yield


@contextmanager
def studio_client(layout: StudioLayout) -> Iterator[Any]:
    """A `SyncPrefectClient` of the studio's server."""
    from prefect.client.orchestration import get_client

    with studio_settings(layout), get_client(sync_client=True) as client:
        yield client
