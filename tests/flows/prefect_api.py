"""Reading what a flow run published, straight from the Prefect API the tests run against."""

from __future__ import annotations

from typing import Any

import httpx
from prefect.settings import PREFECT_API_URL


def latest_artifact(key: str) -> dict[str, Any]:
    """The newest artifact with `key` (id, type, data, flow_run_id, ...)."""
    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        timeout=30,
    )
    response.raise_for_status()
    found = response.json()
    assert found, f"no artifact {key!r}"
    return found[0]
