"""Session-wide fixtures: one Prefect test harness, one local Ray, an isolated workspace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite renders on the small t2v-tiny (32x32, 8 frames) for speed; the shipped default
# (t2v-64f4) is rendered by tests/flows/test_default_checkpoint.py with this unset.
os.environ.setdefault("STORY_CHECKPOINT", "tiny")
# `story search` starts a background search service when none is up; tests (and the commands
# they run) must leave no daemons behind, so only tests that stop what they start turn it on.
os.environ.setdefault("STORY_SEARCH_AUTOSTART", "0")

from story.tasks.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TEST_FILES = REPO / "tests" / "test_files"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (its start costs ~10-20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the whole session; no GPUs are requested on a CPU-only box."""
    import ray

    from story.flows.executors.ray_session import loopback_options

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
        object_store_memory=200 * 1024 * 1024,
        **loopback_options(),
    )
    yield
    ray.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at a fresh workspace under tmp_path."""
    return Settings(workspace=tmp_path / "workspace", shard_size=4, ray_workers=2)
