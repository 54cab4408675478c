"""The flow engine fix: heartbeats keep their contract and stop as soon as the run ends."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from prefect import flow_engine

from story.flows import engine


class FakeEngine:
    """The engine surface the heartbeat context uses; records every heartbeat."""

    def __init__(self, seconds: int | None, final_after: int | None = None) -> None:
        self.heartbeat_seconds = seconds
        self.flow_run = SimpleNamespace(state=SimpleNamespace(is_final=self.final))
        self.final_after = final_after
        self.beats: list[tuple] = []
        self.beat = threading.Event()
        self.logger = SimpleNamespace(debug=lambda *a, **k: None)

    def final(self) -> bool:
        return self.final_after is not None and len(self.beats) >= self.final_after

    def _build_heartbeat_event_template(self):
        return {"prefect.resource.id": "prefect.flow-run.x"}, []

    def _emit_flow_run_heartbeat(self, resource, related) -> None:
        self.beats.append((resource, related))
        self.beat.set()


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == engine.THREAD_NAME]


def test_fix_is_installed_on_the_pinned_prefect():
    # A Prefect upgrade that drops the hooks makes this fail: re-check the fix, then its versions.
    assert engine.installed()
    assert flow_engine._send_heartbeats is engine.send_heartbeats


def test_heartbeats_repeat_at_the_interval_and_stop_with_the_block(monkeypatch):
    monkeypatch.setattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL", 0)
    fake = FakeEngine(seconds=0)
    with engine.send_heartbeats(fake):
        for _ in range(3):
            assert fake.beat.wait(5)
            fake.beat.clear()
    assert len(fake.beats) >= 3
    assert fake.beats[0][0] == {"prefect.resource.id": "prefect.flow-run.x"}
    assert heartbeat_threads() == []
    count = len(fake.beats)
    fake.beat.clear()
    assert not fake.beat.wait(0.2)  # nothing beats once the block has exited
    assert len(fake.beats) == count


def test_a_long_interval_does_not_hold_the_run_open():
    fake = FakeEngine(seconds=3600)
    with engine.send_heartbeats(fake):
        assert fake.beat.wait(5)
    # Joined on exit: nothing is left sleeping out the hour (or even Prefect's 1-s poll).
    assert heartbeat_threads() == []
    assert len(fake.beats) == 1


def test_no_heartbeat_once_the_run_is_final(monkeypatch):
    monkeypatch.setattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL", 0)
    fake = FakeEngine(seconds=0, final_after=2)
    with engine.send_heartbeats(fake):
        for _ in range(50):
            if not heartbeat_threads():
                break
            threading.Event().wait(0.02)
    assert len(fake.beats) == 2


def test_heartbeats_off_starts_no_thread():
    fake = FakeEngine(seconds=None)
    with engine.send_heartbeats(fake):
        assert heartbeat_threads() == []
    assert fake.beats == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_run_emits_its_heartbeat_and_returns(monkeypatch):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    emitted: list[str] = []
    beat = threading.Event()
    original = flow_engine.FlowRunEngine._emit_flow_run_heartbeat

    def record(self, resource=None, related=None):
        emitted.append(resource["prefect.resource.id"])
        beat.set()
        return original(self, resource, related)

    monkeypatch.setattr(flow_engine.FlowRunEngine, "_emit_flow_run_heartbeat", record)

    @engine.flow(name="heartbeat-probe", persist_result=False)
    def probe(x: int) -> int:
        beat.wait(10)  # the run lasts until its first heartbeat is out
        return x + 1

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        state = probe(1, return_state=True)
    assert state.is_completed() and state.result() == 2
    assert emitted == [f"prefect.flow-run.{state.state_details.flow_run_id}"]
    assert heartbeat_threads() == []
