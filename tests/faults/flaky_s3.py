"""A loopback S3 (moto) behind a proxy that fails or stalls chosen requests, as a studio's object
store does under load: 503 SlowDown answers, and replies that come too late."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Faults:
    """What the proxy does to the next requests whose method is in `methods`."""

    methods: tuple[str, ...] = ("PUT", "GET", "HEAD", "POST", "DELETE")
    fail_next: int = 0
    stall_next: int = 0
    stall_s: float = 0.0
    seen: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, method: str, path: str) -> str:
        with self.lock:
            self.seen.append(f"{method} {path}")
            if method not in self.methods:
                return "pass"
            if self.fail_next:
                self.fail_next -= 1
                self.injected.append(f"503 {method} {path}")
                return "fail"
            if self.stall_next:
                self.stall_next -= 1
                self.injected.append(f"stall {method} {path}")
                return "stall"
            return "pass"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A request cut off when the store stops at teardown is not worth a traceback."""


def _handler(upstream: tuple[str, int], faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            action = faults.decide(self.command, self.path)
            if action == "fail":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            if action == "stall":
                time.sleep(faults.stall_s)
            connection = http.client.HTTPConnection(*upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["Host"] = f"{upstream[0]}:{upstream[1]}"
            connection.request(self.command, self.path, body=body, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            for key, value in reply.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    return Proxy


@contextmanager
def flaky_s3(bucket: str) -> Iterator[tuple[dict[str, str], Faults]]:
    """Moto on 127.0.0.1 with `bucket`, reached through the faulty proxy; yields LanceDB-style
    storage options pointing at the proxy, and the proxy's fault switches."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    faults = Faults()
    proxy = _QuietServer(("127.0.0.1", 0), _handler(server.get_host_and_port(), faults))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield (
            {
                "aws_endpoint": endpoint,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "aws_region": "us-east-1",
                "allow_http": "true",
            },
            faults,
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
        server.stop()
