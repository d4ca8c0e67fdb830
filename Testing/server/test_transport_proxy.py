"""Proxies: a loopback server is reached directly whatever HTTP_PROXY/ALL_PROXY say; any other server
goes through the user's proxy. A real HTTP server on 127.0.0.1 answers; the "dead" proxy is a port
nothing listens on; the live proxy is a second local server that records the request line it gets.
"""
from __future__ import annotations

import http.server
import socket
import threading

import pytest

from medsamkit.backend.errors import ServerUnreachableError
from medsamkit.backend.transport import Transport, is_loopback

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def http_server():
    """A server on 127.0.0.1 answering 200 "ok" and recording each request line."""
    lines = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            lines.append(self.requestline)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], lines
    srv.shutdown()
    srv.server_close()


def _proxy_env(monkeypatch, proxy: str) -> None:
    for var in PROXY_VARS:
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_server_is_reached_directly_with_a_dead_proxy_set(http_server, monkeypatch, host):
    port, lines = http_server
    _proxy_env(monkeypatch, f"http://127.0.0.1:{_dead_port()}")
    transport = Transport(f"http://{host}:{port}", None, timeout=5.0, connect_timeout=2.0, retries=0)
    try:
        assert transport.request("GET", "/version").json() == {"ok": True}
    finally:
        transport.close()
    assert lines == ["GET /version HTTP/1.1"]


def test_remote_server_still_goes_through_the_users_proxy(http_server, monkeypatch):
    port, lines = http_server  # plays the proxy: an absolute-form request line is a proxied request
    _proxy_env(monkeypatch, f"http://127.0.0.1:{port}")
    transport = Transport("http://gpu-server.example:8765", None, timeout=5.0, connect_timeout=2.0, retries=0)
    try:
        assert transport.request("GET", "/version").status_code == 200
    finally:
        transport.close()
    assert lines == ["GET http://gpu-server.example:8765/version HTTP/1.1"]


def test_remote_server_behind_a_dead_proxy_fails_with_the_servers_address(monkeypatch):
    _proxy_env(monkeypatch, f"http://127.0.0.1:{_dead_port()}")
    transport = Transport("http://gpu-server.example:8765", None, timeout=3.0, connect_timeout=1.0, retries=0)
    try:
        with pytest.raises(ServerUnreachableError, match="gpu-server.example:8765"):
            transport.request("GET", "/version")
    finally:
        transport.close()


def test_is_loopback():
    assert all(is_loopback(u) for u in ("http://127.0.0.1:8765", "http://127.5.0.1", "http://[::1]:80",
                                        "http://localhost:1", "https://LOCALHOST", "http://a.localhost"))
    assert not any(is_loopback(u) for u in ("http://10.0.0.2:8765", "http://gpu.example", "http://[::2]",
                                            "http://128.0.0.1", "http://localhost.example.com"))
