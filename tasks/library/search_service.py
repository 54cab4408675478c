"""The warm search path: a resident process on 127.0.0.1 holding a `LibrarySearcher`.

`serve(settings)` loads the library and the query encoders once and answers POST /search with
the same hits `story search` prints; GET /health describes what it serves. It writes
<workspace>/search_service.json (pid, port, library) so `run_search` in any later process finds
it, asks it, and falls back to searching in-process when it is absent, stale or serves another
library. The service holds the table's search columns in memory (`resident=True`), re-reads them
when the table's version changes, so new clips show up, and keeps HTTP connections open
(HTTP/1.1) for callers that ask many times; POST /shutdown or `worker_idle_s` without a request
stops it. While it loads and serves it holds <workspace>/search_service.lock, so a second
service of the same workspace (an autostart racing another) stops instead of loading again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from http.client import HTTPConnection, HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.library.filters import SearchFilters

HOST = "127.0.0.1"
STATE_FILE = "search_service.json"
LOCK_FILE = "search_service.lock"
CONNECT_TIMEOUT_S = 0.25
REFRESH_S = 2.0
KEEP_ALIVE_S = 60.0  # an idle kept-alive connection is closed after this long


def state_path(settings: Any) -> Path:
    return Path(settings.workspace) / STATE_FILE


def lock_path(settings: Any) -> Path:
    return Path(settings.workspace) / LOCK_FILE


@contextlib.contextmanager
def _service_lock(settings: Any) -> Iterator[None]:
    """Hold the workspace's service lock (the file names the holder's pid); StoryError when
    another process holds it. The kernel releases it when the holder exits, however it exits."""
    import fcntl

    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise StoryError(
                f"a search service of {settings.workspace} is already starting or running "
                f"(pid {holder})"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def service_starting(settings: Any) -> bool:
    """Whether a search service of this workspace is loading or serving (holds the lock)."""
    try:
        with _service_lock(settings):
            return False
    except StoryError:
        return True


def _library_key(settings: Any) -> dict[str, str]:
    return {"lancedb": str(settings.lancedb), "table": str(settings.clips_table)}


def _request(payload: dict[str, Any], filters: SearchFilters | None) -> dict[str, Any]:
    return {**payload, "filters": asdict(filters) if filters else None}


def search_payload(
    searcher: Any,
    query: str,
    k: int = 5,
    filters: SearchFilters | None = None,
    mode: str = "hybrid",
    rerank: bool = True,
    diversity: str = "source",
) -> dict[str, Any]:
    """One search as a JSON-ready answer: hits, wall milliseconds and the process's CPU
    milliseconds meanwhile (one query's own CPU when no other request runs beside it)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    hits = searcher.search(
        query, k=k, filters=filters, mode=mode, rerank=rerank, diversity=diversity
    )
    return {
        "hits": [h.to_dict() for h in hits],
        "ms": round(1000 * (time.perf_counter() - t0), 2),
        "cpu_ms": round(1000 * (time.process_time() - cpu0), 2),
    }


class _Service(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Any) -> None:
        from story.tasks.library.searcher import LibrarySearcher

        super().__init__((HOST, 0), _Handler)
        self.settings = settings
        self.searcher = LibrarySearcher.from_settings(
            settings, resident=True, snapshots=True, builds_large=True
        )
        self.version = self.searcher.index.version()
        self.checked = time.monotonic()
        self.last_request = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = False

    def current(self) -> Any:
        """The searcher, re-opened when the table moved on to a newer version."""
        from story.tasks.library.index import ClipIndex

        with self.lock:
            now = time.monotonic()
            self.last_request = now
            if now - self.checked > REFRESH_S:
                self.checked = now
                index = ClipIndex(
                    self.settings.lancedb,
                    self.settings.clips_table,
                    storage_options=self.settings.storage_options or None,
                )
                if index.version() != self.version:
                    self.searcher.refresh(index)
                    self.version = index.version()
            return self.searcher


class _Handler(BaseHTTPRequestHandler):
    server: _Service
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_S
    # Headers and body go out in two writes; with Nagle on, the body waited for the client's
    # delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _reply(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopped:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.server.stopped:
            self._reply(503, {"error": "the search service has stopped"})
            return
        if self.path == "/health":
            self._reply(200, {"pid": os.getpid(), **self.server.current().describe()})
        else:
            self._reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length", 0))
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._reply(400, {"error": f"request is not JSON: {exc}"})
            return
        if self.server.stopped:
            self._reply(503, {"error": "the search service has stopped"})
            return
        if self.path == "/shutdown":
            self.server.stopped = True
            self._reply(200, {"stopping": os.getpid()})
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        if self.path != "/search":
            self._reply(404, {"error": f"no such path {self.path}"})
            return
        try:
            filters = request.get("filters")
            answer = search_payload(
                self.server.current(),
                request["query"],
                k=int(request.get("k", 5)),
                filters=SearchFilters(**filters) if filters else None,
                mode=request.get("mode", "hybrid"),
                rerank=bool(request.get("rerank", True)),
                diversity=request.get("diversity", "source"),
            )
        except (StoryError, ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, answer)


def serve(settings: Any, ready: threading.Event | None = None) -> None:
    """Run the service until shutdown or `worker_idle_s` idle seconds; writes the state file.
    StoryError when a service of this workspace is already loading or serving."""
    with _service_lock(settings):
        _serve(settings, ready)


def _serve(settings: Any, ready: threading.Event | None) -> None:
    service = _Service(settings)
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "port": service.server_address[1], **_library_key(settings)}
    path.write_text(json.dumps(state))
    idle = float(getattr(settings, "worker_idle_s", 0) or 0)

    def watch() -> None:
        while idle > 0:
            time.sleep(min(idle, 5.0))
            if time.monotonic() - service.last_request > idle:
                service.shutdown()
                return

    threading.Thread(target=watch, daemon=True).start()
    if ready is not None:
        ready.set()
    try:
        service.serve_forever(poll_interval=0.2)
    finally:
        service.stopped = True
        service.server_close()
        with contextlib.suppress(OSError, json.JSONDecodeError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


_OPEN: dict[int, HTTPConnection] = {}
_OPEN_LOCK = threading.Lock()


def _exchange(
    port: int, method: str, path: str, body: bytes | None, timeout: float
) -> tuple[int, dict[str, Any]]:
    """One request to the service on a kept-alive connection (a fresh one if it went stale)."""
    with _OPEN_LOCK:
        connection = _OPEN.pop(port, None)
    while True:
        fresh = connection is None
        if connection is None:
            connection = HTTPConnection(HOST, port, timeout=CONNECT_TIMEOUT_S)
            connection.connect()
        connection.sock.settimeout(timeout)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            doc = json.loads(response.read())
        except (OSError, HTTPException):
            connection.close()
            connection = None
            if fresh:
                raise
            continue
        if response.will_close:
            connection.close()
        else:
            with _OPEN_LOCK:
                _OPEN.setdefault(port, connection)
        return response.status, doc


def service_call(
    settings: Any, path: str, payload: dict[str, Any] | None = None, timeout: float = 30.0
) -> dict[str, Any] | None:
    """Ask the running service (None when there is none for this library)."""
    try:
        state = json.loads(state_path(settings).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if {k: state.get(k) for k in ("lancedb", "table")} != _library_key(settings):
        return None
    body = None if payload is None else json.dumps(payload).encode()
    try:
        status, doc = _exchange(
            int(state["port"]), "GET" if payload is None else "POST", path, body, timeout
        )
    except (OSError, HTTPException, json.JSONDecodeError):
        return None
    if status == 503:  # stopped, its kept-alive connection not yet closed
        return None
    if status != 200:
        raise StoryError(f"search service: {doc.get('error', status)}")
    return doc


def run_search(
    settings: Any,
    query: str,
    k: int = 5,
    filters: SearchFilters | None = None,
    mode: str = "hybrid",
    rerank: bool = True,
    diversity: str = "source",
    use_service: bool = True,
) -> dict[str, Any]:
    """Search through the resident service when one serves this library, else in this process:
    from the library's snapshot when it is current (no LanceDB import), else through LanceDB."""
    payload = {"query": query, "k": k, "mode": mode, "rerank": rerank, "diversity": diversity}
    if use_service:
        answer = service_call(settings, "/search", _request(payload, filters))
        if answer is not None:
            return {**answer, "served_by": "service"}
    from story.tasks.library.searcher import LibrarySearcher

    searcher = LibrarySearcher.from_snapshot(settings)
    served_by = "snapshot"
    if searcher is None:
        from story.tasks.library.fast_import import lancedb_deferred

        lancedb_deferred()
        # The table in memory, as the service and the snapshot answer (full-text ties
        # included), written as the snapshot so the next cold search need not import LanceDB.
        searcher = LibrarySearcher.from_settings(settings, resident=True, snapshots=True)
        served_by = "in-process"
    answer = search_payload(searcher, query, k, filters, mode, rerank, diversity)
    return {**answer, "served_by": served_by}
