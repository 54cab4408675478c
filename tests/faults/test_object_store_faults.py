"""Object-store errors and timeouts, injected between the depth store and a loopback S3 (moto):
transient ones are retried with backoff, lasting ones end in a clear error naming the object,
and nothing half-written is ever visible."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from story.tasks.structure.depth_store import DepthStore, StructureStoreError
from tests.faults.conftest import Recorder
from tests.faults.flaky_s3 import Faults, flaky_s3

BUCKET = "studio"
ARRAY = np.linspace(0, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[dict[str, str], Faults]]:
    with flaky_s3(BUCKET) as (options, faults):
        yield {**options, "timeout": "1s", "connect_timeout": "1s"}, faults


@pytest.fixture
def faults(s3: tuple[dict[str, str], Faults]) -> Iterator[Faults]:
    switches = s3[1]
    yield switches
    switches.fail_next = switches.stall_next = 0
    switches.methods = Faults().methods
    switches.injected.clear()


def _store(s3: tuple[dict[str, str], Faults], prefix: str) -> DepthStore:
    return DepthStore(f"s3://{BUCKET}/{prefix}", s3[0])


def test_transient_503s_are_retried_with_backoff(s3, faults: Faults, fault: Recorder) -> None:
    store = _store(s3, "transient")
    faults.methods, faults.fail_next = ("PUT",), 3
    store.put("clip-a", ARRAY)
    faults.methods, faults.fail_next = ("GET",), 2
    back = store.get("clip-a")
    fault(
        "object store: 3 PUTs and 2 GETs answered 503 SlowDown",
        "retried; entry stored and read back identical",
        "retried; entry stored and read back identical"
        if np.allclose(back, ARRAY, atol=1e-3) and len(faults.injected) == 5
        else f"{len(faults.injected)} injected, read back equal: {np.allclose(back, ARRAY)}",
    )
    assert len(faults.injected) == 5
    np.testing.assert_allclose(back, ARRAY, atol=1e-3)


def test_a_reply_later_than_the_timeout_is_retried(s3, faults: Faults, fault: Recorder) -> None:
    store = _store(s3, "stall_once")
    store.put("clip-a", ARRAY)
    faults.methods, faults.stall_next, faults.stall_s = ("GET",), 1, 3.0
    started = time.monotonic()
    back = store.get("clip-a")
    seconds = time.monotonic() - started
    fault(
        "object store: one GET stalls 3 s past a 1 s timeout",
        "timed out, retried, read back identical",
        "timed out, retried, read back identical"
        if np.allclose(back, ARRAY, atol=1e-3) and seconds < 3.0
        else f"read back after {seconds:.1f} s",
    )
    assert seconds < 3.0
    np.testing.assert_allclose(back, ARRAY, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["503", "stall"])
def test_a_store_that_keeps_failing_gives_a_clear_error_and_no_entry(
    s3, faults: Faults, fault: Recorder, kind: str
) -> None:
    store = _store(s3, f"down_{kind}")
    faults.methods = ("PUT",)
    if kind == "503":
        faults.fail_next = 10_000
    else:
        faults.stall_next, faults.stall_s = 10_000, 3.0
    started = time.monotonic()
    with pytest.raises(StructureStoreError, match=f"s3://{BUCKET}/down_{kind}/") as caught:
        store.put("clip-a", ARRAY)
    seconds = time.monotonic() - started
    faults.fail_next = faults.stall_next = 0
    stored = store.has("clip-a")
    fault(
        f"object store: every PUT {'answered 503' if kind == '503' else 'stalls past the timeout'}",
        "clear error naming the object, no entry",
        "clear error naming the object, no entry"
        if not stored
        else "an entry is visible after the failed write",
        held=not stored,
    )
    assert not stored
    assert "cannot write the depth store" in str(caught.value)
    assert seconds < 300
