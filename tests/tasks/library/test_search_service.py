"""The warm search path answers like the in-process one, and a dead service is not waited for."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from story.tasks.errors import StoryError
from story.tasks.library import search_service
from story.tasks.library.searcher import LibrarySearcher, QueryEncoders
from story.tasks.settings import Settings
from tests.tasks.library.test_search_ranking import DIM, FixedEncoder, row, table


@pytest.fixture()
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    rows = [row("left", "sideways_left"), row("loop", "circling"), row("still", "static")]
    index = table(tmp_path, rows)
    same = FixedEncoder(np.ones(DIM) / np.sqrt(DIM))

    def searcher(settings: Settings, resident: bool = False) -> LibrarySearcher:
        return LibrarySearcher(index, QueryEncoders(same, same), resident=resident)

    monkeypatch.setattr(
        LibrarySearcher,
        "from_settings",
        classmethod(lambda cls, s, resident=False, **_: searcher(s, resident)),
    )
    return Settings(workspace=tmp_path / "ws", lancedb_uri=index.uri, worker_idle_s=0)


def test_service_answers_like_in_process_and_stops(library: Settings) -> None:
    local = search_service.run_search(library, "a ball goes round in a loop", k=2)
    assert local["served_by"] == "in-process" and local["hits"][0]["clip_id"] == "loop"
    ready = threading.Event()
    thread = threading.Thread(target=search_service.serve, args=(library, ready), daemon=True)
    thread.start()
    assert ready.wait(30)
    served = search_service.run_search(library, "a ball goes round in a loop", k=2)
    assert served["served_by"] == "service"
    assert [h["clip_id"] for h in served["hits"]] == [h["clip_id"] for h in local["hits"]]
    health = search_service.service_call(library, "/health")
    assert health is not None and health["rows"] == 3
    port = json.loads(search_service.state_path(library).read_text())["port"]
    kept = search_service._OPEN[port]  # one connection, kept alive between searches
    again = search_service.run_search(library, "a ball goes round in a loop", k=2)
    assert again["hits"] == served["hits"] and search_service._OPEN[port] is kept
    with pytest.raises(Exception, match="unknown diversity"):
        search_service.run_search(library, "x", diversity="sometimes")
    search_service.service_call(library, "/shutdown", {})
    thread.join(30)
    assert not thread.is_alive()
    assert not search_service.state_path(library).exists()
    assert port not in search_service._OPEN  # the service closed it when stopping


def test_a_stale_state_file_falls_back_to_in_process(library: Settings) -> None:
    path = search_service.state_path(library)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "port": 9, "lancedb": library.lancedb, "table": "clips"}))
    answer = search_service.run_search(library, "a ball slides to the left", k=1)
    assert answer["served_by"] == "in-process" and answer["hits"][0]["clip_id"] == "left"


def test_a_service_for_another_library_is_not_used(library: Settings, tmp_path: Path) -> None:
    path = search_service.state_path(library)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "port": 9, "lancedb": "elsewhere", "table": "clips"}))
    assert search_service.service_call(library, "/health") is None


def test_one_service_per_workspace(library: Settings) -> None:
    assert not search_service.service_starting(library)
    ready = threading.Event()
    thread = threading.Thread(target=search_service.serve, args=(library, ready), daemon=True)
    thread.start()
    assert ready.wait(30)
    assert search_service.service_starting(library)
    with pytest.raises(StoryError, match="already starting or running"):
        search_service.serve(library)
    assert search_service.run_search(library, "a ball slides to the left")["served_by"] == "service"
    search_service.service_call(library, "/shutdown", {})
    thread.join(30)
    assert not search_service.service_starting(library)
