"""ASGI middleware run before any route: bearer token, API version, request size; and the
connection limits of the HTTP server under it (:func:`uvicorn_options`).

Done here rather than per route so that no endpoint can forget it and so that a request is
refused before its body is read: a wrong token is answered 401 and an oversized upload 413
without the server decoding, storing or computing anything.

Below the ASGI layer, uvicorn closes idle keep-alive connections but has no limit on how long a
client may take to send a request's line and headers: a half-sent request held its connection
open indefinitely. :class:`HeaderTimeoutProtocol` closes a connection that has not completed its
request headers within ``protocol.HEADER_TIMEOUT_S``; ``limit_concurrency`` bounds the number of
connections served at once.
"""
from __future__ import annotations

import hmac
import json

from .. import protocol


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its limit (handled as 413 by app.py)."""

    def __init__(self, limit: int):
        super().__init__(f"The request body exceeds this server's limit of {limit / 2**20:.1f} MiB.")
        self.limit = limit


def is_upload(method: str, path: str) -> bool:
    """Requests whose body is an array frame (the large ones)."""
    return method == "POST" and (path == protocol.PATH_SESSIONS or path.endswith("/masks"))


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """token: bytes or None (no auth, loopback only); max_upload_bytes: limit of an upload body."""

    def __init__(self, app, token: bytes | None, max_upload_bytes: int):
        self.app = app
        self.token = token
        self.max_upload_bytes = int(max_upload_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers", []):
            headers[key.lower()] = value
        path = scope.get("path", "")
        if self.token is not None and path not in protocol.PUBLIC_PATHS:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            # compare_digest: time independent of where the strings differ (no token guessing by timing)
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                return await send_json(send, 401, {
                    "detail": "Missing or wrong token. Give the server's token (the content of the file passed "
                              "to 'medsamkit serve --token-file') to the client.", "code": "unauthorized"},
                    [(b"www-authenticate", b"Bearer")])
        api = headers.get(protocol.API_HEADER.lower().encode())
        # /version always answers, so a client of another version can say which versions differ
        if api is not None and path not in protocol.PUBLIC_PATHS and api.strip() != str(protocol.API_VERSION).encode():
            return await send_json(send, 409, {
                "detail": f"Client speaks API version {api.decode('latin-1')}, this server speaks "
                          f"{protocol.API_VERSION}. Install the same medsamkit version on both sides.",
                "code": "version_mismatch", "api": protocol.API_VERSION})
        meta_name = protocol.META_HEADER.lower().encode()
        meta_bytes = sum(len(v) for k, v in scope.get("headers", []) if k.lower() == meta_name)
        if meta_bytes > protocol.MAX_META_BYTES:  # refused before the body is read
            return await send_json(send, 413, {
                "detail": f"Header {protocol.META_HEADER} has {meta_bytes} bytes; this server accepts at most "
                          f"{protocol.MAX_META_BYTES}.", "code": "too_large"})
        limit = self.max_upload_bytes if is_upload(scope.get("method", ""), path) else protocol.MAX_JSON_BYTES
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await send_json(send, 400, {"detail": "Bad Content-Length header.", "code": "bad_request"})
            if declared > limit:
                return await send_json(send, 413, {
                    "detail": f"The request body ({declared / 2**20:.1f} MiB) exceeds this server's limit of "
                              f"{limit / 2**20:.1f} MiB; use a smaller volume or raise --max-upload-mb.",
                    "code": "too_large"})
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # chunked bodies have no Content-Length to check up front
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted_receive, send)


def header_timeout_protocol(timeout_s: float = protocol.HEADER_TIMEOUT_S):
    """uvicorn's h11 protocol class plus a deadline for each request's line and headers.

    The timer runs while the connection waits for (or is part-way through) a request's headers:
    from the moment the connection opens, and again when data of a next request arrives. It stops
    when the headers are complete; on expiry the connection is closed without an answer.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        header_timeout_s = float(timeout_s)

        def connection_made(self, transport) -> None:
            self._header_timer = None
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._reading_headers():
                self._arm_header_timer()
            else:
                self._disarm_header_timer()

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _reading_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._reading_headers() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def uvicorn_options(header_timeout_s: float = protocol.HEADER_TIMEOUT_S) -> dict:
    """Keyword arguments for ``uvicorn.Config``: header deadline, keep-alive, connection and header limits."""
    return {"http": header_timeout_protocol(header_timeout_s), "timeout_keep_alive": protocol.KEEP_ALIVE_TIMEOUT_S,
            "limit_concurrency": protocol.MAX_CONNECTIONS, "h11_max_incomplete_event_size": protocol.MAX_HEADER_BYTES}
