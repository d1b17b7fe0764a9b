"""Fixtures of the weights tests: a misbehaving file server on 127.0.0.1 and a private cache."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from i3d import weights as W


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Server:
    """A file server on 127.0.0.1 whose misbehaviour tests can choose."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "ok"  # ok | truncate | error | no-range
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if server.mode == "error" or data is None:
                    self.send_error(500 if data is not None else 404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.mode != "no-range":
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                # Index pages (pip's "simple" API) are HTML.
                self.send_header("Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream")
                self.end_headers()
                if server.mode == "truncate":
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, data: bytes) -> W.RemoteFile:
        self.files[path] = data
        return W.RemoteFile(self.url + path, blob_id(data))


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"
